//! SPIFFE ids: `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.

use std::fmt;
use std::str::FromStr;

/// The trust domain used when none is configured.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// A validated SPIFFE id. Outrigger workloads always have the `/ns/<ns>/sa/<sa>` shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    uri: String,
    /// Length of `spiffe://<trust-domain>`, so that parts are slices, not copies.
    authority_end: usize,
}

/// Why a string is not a usable SPIFFE id.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpiffeIdError {
    #[error("{0:?} does not start with spiffe://")]
    Scheme(String),
    #[error("{0:?} has an invalid trust domain (lowercase letters, digits, '.', '-', '_')")]
    TrustDomain(String),
    #[error("{0:?} has an invalid path: expected /ns/<namespace>/sa/<service-account>")]
    Path(String),
    #[error("{0:?} is not of the form <namespace>/<service-account>")]
    Short(String),
}

impl SpiffeId {
    /// The id of service account `sa` in namespace `ns`.
    pub fn workload(trust_domain: &str, ns: &str, sa: &str) -> Result<Self, SpiffeIdError> {
        format!("spiffe://{trust_domain}/ns/{ns}/sa/{sa}").parse()
    }

    /// Parses the short `ns/sa` form that the CLI accepts.
    pub fn from_short(trust_domain: &str, short: &str) -> Result<Self, SpiffeIdError> {
        match short.split_once('/') {
            Some((ns, sa)) if !ns.is_empty() && !sa.is_empty() && !sa.contains('/') => {
                Self::workload(trust_domain, ns, sa)
            }
            _ => Err(SpiffeIdError::Short(short.to_string())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.uri
    }

    pub fn trust_domain(&self) -> &str {
        &self.uri["spiffe://".len()..self.authority_end]
    }

    /// The namespace segment.
    pub fn namespace(&self) -> &str {
        self.segments().0
    }

    /// The service-account segment.
    pub fn service_account(&self) -> &str {
        self.segments().1
    }

    fn segments(&self) -> (&str, &str) {
        // Validated at parse time: the path is exactly /ns/<ns>/sa/<sa>.
        let mut parts = self.uri[self.authority_end..].split('/').skip(1);
        let ns = parts.nth(1).unwrap_or_default();
        let sa = parts.nth(1).unwrap_or_default();
        (ns, sa)
    }
}

fn valid_trust_domain(td: &str) -> bool {
    !td.is_empty()
        && td.len() <= 255
        && td.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        })
}

/// Kubernetes-style name segment: what SPIFFE allows in a path segment, minus the dots-only ones.
fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s
            .strip_prefix("spiffe://")
            .ok_or_else(|| SpiffeIdError::Scheme(s.to_string()))?;
        let slash = rest.find('/').unwrap_or(rest.len());
        let (td, path) = rest.split_at(slash);
        if !valid_trust_domain(td) {
            return Err(SpiffeIdError::TrustDomain(s.to_string()));
        }
        let parts: Vec<&str> = path.split('/').collect();
        let shaped = parts.len() == 5
            && parts[0].is_empty()
            && parts[1] == "ns"
            && valid_segment(parts[2])
            && parts[3] == "sa"
            && valid_segment(parts[4]);
        if !shaped {
            return Err(SpiffeIdError::Path(s.to_string()));
        }
        Ok(SpiffeId {
            uri: s.to_string(),
            authority_end: "spiffe://".len() + td.len(),
        })
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_parts() {
        let id: SpiffeId = "spiffe://cluster.local/ns/shop/sa/payments"
            .parse()
            .unwrap();
        assert_eq!(id.trust_domain(), "cluster.local");
        assert_eq!(id.namespace(), "shop");
        assert_eq!(id.service_account(), "payments");
        assert_eq!(id.to_string(), "spiffe://cluster.local/ns/shop/sa/payments");
    }

    #[test]
    fn short_form() {
        let id = SpiffeId::from_short("example.org", "ops/api").unwrap();
        assert_eq!(id.as_str(), "spiffe://example.org/ns/ops/sa/api");
        assert!(SpiffeId::from_short("cluster.local", "ops").is_err());
        assert!(SpiffeId::from_short("cluster.local", "ops/a/b").is_err());
        assert!(SpiffeId::from_short("cluster.local", "/a").is_err());
    }

    #[test]
    fn rejects_bad_ids() {
        for bad in [
            "http://cluster.local/ns/a/sa/b",
            "spiffe://Cluster.local/ns/a/sa/b",
            "spiffe:///ns/a/sa/b",
            "spiffe://cluster.local",
            "spiffe://cluster.local/ns/a",
            "spiffe://cluster.local/ns/a/sa/",
            "spiffe://cluster.local/ns/a/sa/b/c",
            "spiffe://cluster.local/ns/../sa/b",
            "spiffe://cluster.local/ns/a b/sa/c",
            "spiffe://cluster.local/x/a/sa/b",
        ] {
            assert!(bad.parse::<SpiffeId>().is_err(), "{bad} should be rejected");
        }
    }
}
