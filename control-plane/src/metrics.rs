//! The control plane's own metrics, encoded with `prometheus-client` (OpenMetrics, or the
//! classic text format for scrapers that do not ask for it: `outrigger_api::exposition`).
//! The registry is handed down from the server (no global), and every series is
//! resolved when it is made: a request bumps a counter, never looks one up.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// How a certificate request proved its identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProvenBy {
    /// A bootstrap token (first certificate).
    Token,
    /// The caller's current certificate, over mTLS (renewal).
    Certificate,
}

impl ProvenBy {
    pub fn label(self) -> &'static str {
        match self {
            ProvenBy::Token => "token",
            ProvenBy::Certificate => "certificate",
        }
    }
}

/// Why an API request was refused; the label is the API's error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    BadRequest,
    InvalidCsr,
    Unauthenticated,
    Forbidden,
    Revoked,
    PayloadTooLarge,
    RequestTimeout,
    TooManyInstances,
    TooManyProxies,
    Internal,
}

impl Refusal {
    /// What a certificate request can be refused for: its series exist from the start.
    const CERTIFICATE: [Refusal; 8] = [
        Refusal::BadRequest,
        Refusal::InvalidCsr,
        Refusal::Unauthenticated,
        Refusal::Forbidden,
        Refusal::Revoked,
        Refusal::PayloadTooLarge,
        Refusal::RequestTimeout,
        Refusal::Internal,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Refusal::BadRequest => "bad-request",
            Refusal::InvalidCsr => "invalid-csr",
            Refusal::Unauthenticated => "unauthenticated",
            Refusal::Forbidden => "forbidden",
            Refusal::Revoked => "revoked",
            Refusal::PayloadTooLarge => "payload-too-large",
            Refusal::RequestTimeout => "request-timeout",
            Refusal::TooManyInstances => "too-many-instances",
            Refusal::TooManyProxies => "too-many-proxies",
            Refusal::Internal => "internal",
        }
    }
}

/// The API endpoints, as the `endpoint` label names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Certificates,
    Watch,
    Register,
    Stats,
    Admission,
}

impl Endpoint {
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Certificates => "certificates",
            Endpoint::Watch => "watch",
            Endpoint::Register => "register",
            Endpoint::Stats => "stats",
            Endpoint::Admission => "admission",
        }
    }
}

/// Why a watch stream was cut by the control plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchCut {
    /// Its next line waited longer than `--watch-stall-timeout` to be written.
    Stalled,
    /// Its identity was revoked.
    Revoked,
}

/// Counters of the control plane, and the gauges it reads from elsewhere at scrape time.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// By [`ProvenBy`]: token, certificate.
    issued: [Counter; 2],
    /// By [`Refusal::CERTIFICATE`], in that order.
    refused: [Counter; Refusal::CERTIFICATE.len()],
    /// Every endpoint's refusals; a series is made with its first refusal.
    api_refused: Family<EndpointReasonLabels, Counter>,
    /// By [`WatchCut`]: stalled, revoked.
    watchers_cut: [Counter; 2],
    api_connections_refused: Counter,
    api_connections: Gauge,
    revoked_identities: Gauge,
    reloads_ok: Counter,
    reloads_error: Counter,
    watchers: Gauge,
    config_version: Gauge,
    config_valid: Gauge,
    registered_instances: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProvenByLabels {
    proven_by: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointReasonLabels {
    endpoint: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Gauges owned elsewhere, read when rendering.
#[derive(Clone, Copy, Debug, Default)]
pub struct Gauges {
    /// Proxies connected to the config stream.
    pub watchers: usize,
    pub config_version: u64,
    /// The policy files on disk are valid (else the last good version is served).
    pub config_valid: bool,
    /// Healthy app instances registered by their sidecars.
    pub registered_instances: usize,
    /// Open connections to the API port.
    pub api_connections: usize,
    /// Identities in the revocation list.
    pub revoked_identities: usize,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("outrigger_control_plane");
        let issued: Family<ProvenByLabels, Counter> = Family::default();
        let refused: Family<ReasonLabels, Counter> = Family::default();
        let reloads: Family<ResultLabels, Counter> = Family::default();
        // Every series exists from the start, at 0, so that a rate over it is defined.
        let issued_series = [ProvenBy::Token, ProvenBy::Certificate].map(|by| {
            issued.get_or_create_owned(&ProvenByLabels {
                proven_by: by.label(),
            })
        });
        let refused_series = Refusal::CERTIFICATE.map(|reason| {
            refused.get_or_create_owned(&ReasonLabels {
                reason: reason.label(),
            })
        });
        let reloads_ok = reloads.get_or_create_owned(&ResultLabels { result: "ok" });
        let reloads_error = reloads.get_or_create_owned(&ResultLabels { result: "error" });
        let [
            watchers,
            config_version,
            config_valid,
            registered_instances,
            api_connections,
            revoked_identities,
        ] = std::array::from_fn(|_| Gauge::default());
        let api_refused: Family<EndpointReasonLabels, Counter> = Family::default();
        let cuts: Family<ReasonLabels, Counter> = Family::default();
        let watchers_cut =
            ["stalled", "revoked"].map(|reason| cuts.get_or_create_owned(&ReasonLabels { reason }));
        let api_connections_refused = Counter::default();
        registry.register(
            "certificates_issued",
            "Workload certificates issued, by how the caller proved its identity",
            issued,
        );
        registry.register(
            "certificate_requests_refused",
            "Certificate requests refused, by reason",
            refused,
        );
        registry.register(
            "watchers",
            "Proxies connected to the config stream",
            watchers.clone(),
        );
        registry.register(
            "config_version",
            "Version of the config snapshot being served",
            config_version.clone(),
        );
        registry.register(
            "config_valid",
            "1 if the policy files on disk are valid; 0 if the last reload failed and the last good version is still served",
            config_valid.clone(),
        );
        registry.register(
            "config_reloads",
            "Reloads of the policy dir, by result",
            reloads,
        );
        registry.register(
            "registered_instances",
            "Healthy app instances registered by their sidecars",
            registered_instances.clone(),
        );
        registry.register(
            "api_requests_refused",
            "API requests refused, by endpoint and API error code",
            api_refused.clone(),
        );
        registry.register(
            "watchers_cut",
            "Watch streams the control plane cut: stalled (the proxy stopped reading), revoked (its identity was revoked)",
            cuts,
        );
        registry.register(
            "api_connections",
            "Open connections to the API port",
            api_connections.clone(),
        );
        registry.register(
            "api_connections_refused",
            "API connections closed at once because --max-connections were open",
            api_connections_refused.clone(),
        );
        registry.register(
            "revoked_identities",
            "Identities in the revocation list (outrigger revoke)",
            revoked_identities.clone(),
        );
        Metrics {
            registry,
            issued: issued_series,
            refused: refused_series,
            api_refused,
            watchers_cut,
            api_connections_refused,
            api_connections,
            revoked_identities,
            reloads_ok,
            reloads_error,
            watchers,
            config_version,
            config_valid,
            registered_instances,
        }
    }
}

impl Metrics {
    pub fn issued(&self, proven_by: ProvenBy) {
        let index = match proven_by {
            ProvenBy::Token => 0,
            ProvenBy::Certificate => 1,
        };
        self.issued[index].inc();
    }

    /// A refused certificate request: counted by reason, and with the other endpoints'.
    pub fn refused(&self, reason: Refusal) {
        if let Some(i) = Refusal::CERTIFICATE.iter().position(|r| *r == reason) {
            self.refused[i].inc();
        }
        self.api_refused(Endpoint::Certificates, reason);
    }

    /// A refused API request. Refusals are rare and their label sets few (endpoints ×
    /// error codes), so the series is looked up here rather than held.
    pub fn api_refused(&self, endpoint: Endpoint, reason: Refusal) {
        self.api_refused
            .get_or_create(&EndpointReasonLabels {
                endpoint: endpoint.label(),
                reason: reason.label(),
            })
            .inc();
    }

    /// A watch stream cut by the control plane.
    pub fn watcher_cut(&self, why: WatchCut) {
        let index = match why {
            WatchCut::Stalled => 0,
            WatchCut::Revoked => 1,
        };
        self.watchers_cut[index].inc();
    }

    /// An API connection closed at once: `--max-connections` were open.
    pub fn api_connection_refused(&self) {
        self.api_connections_refused.inc();
    }

    /// A reload of the policy dir, valid or not.
    pub fn reloaded(&self, ok: bool) {
        if ok {
            self.reloads_ok.inc();
        } else {
            self.reloads_error.inc();
        }
    }

    /// OpenMetrics text. Gauges owned elsewhere are passed in.
    pub fn render(&self, gauges: Gauges) -> String {
        let to_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.watchers.set(to_i64(gauges.watchers as u64));
        self.config_version.set(to_i64(gauges.config_version));
        self.config_valid.set(i64::from(gauges.config_valid));
        self.registered_instances
            .set(to_i64(gauges.registered_instances as u64));
        self.api_connections
            .set(to_i64(gauges.api_connections as u64));
        self.revoked_identities
            .set(to_i64(gauges.revoked_identities as u64));
        let mut out = String::with_capacity(2048);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series_with_help_and_type() {
        let metrics = Metrics::default();
        metrics.issued(ProvenBy::Token);
        metrics.issued(ProvenBy::Token);
        metrics.refused(Refusal::InvalidCsr);
        metrics.api_refused(Endpoint::Register, Refusal::TooManyInstances);
        metrics.watcher_cut(WatchCut::Stalled);
        metrics.api_connection_refused();
        metrics.reloaded(true);
        metrics.reloaded(false);
        metrics.reloaded(false);
        let open = metrics.render(Gauges {
            watchers: 3,
            config_version: 42,
            config_valid: false,
            registered_instances: 2,
            api_connections: 5,
            revoked_identities: 1,
        });
        assert!(open.ends_with("# EOF\n"));
        let text = outrigger_api::exposition::classic(&open);
        assert!(text.contains(
            "outrigger_control_plane_certificates_issued_total{proven_by=\"token\"} 2\n"
        ));
        assert!(text.contains(
            "outrigger_control_plane_certificates_issued_total{proven_by=\"certificate\"} 0\n"
        ));
        assert!(text.contains(
            "outrigger_control_plane_certificate_requests_refused_total{reason=\"invalid-csr\"} 1\n"
        ));
        assert!(text.contains("outrigger_control_plane_watchers 3\n"));
        assert!(text.contains("outrigger_control_plane_config_version 42\n"));
        assert!(text.contains("outrigger_control_plane_config_valid 0\n"));
        assert!(text.contains("outrigger_control_plane_config_reloads_total{result=\"ok\"} 1\n"));
        assert!(
            text.contains("outrigger_control_plane_config_reloads_total{result=\"error\"} 2\n")
        );
        assert!(text.contains("outrigger_control_plane_registered_instances 2\n"));
        assert!(text.contains(
            "outrigger_control_plane_api_requests_refused_total{endpoint=\"certificates\",reason=\"invalid-csr\"} 1\n"
        ));
        assert!(text.contains(
            "outrigger_control_plane_api_requests_refused_total{endpoint=\"register\",reason=\"too-many-instances\"} 1\n"
        ));
        assert!(
            text.contains("outrigger_control_plane_watchers_cut_total{reason=\"stalled\"} 1\n")
        );
        assert!(
            text.contains("outrigger_control_plane_watchers_cut_total{reason=\"revoked\"} 0\n")
        );
        assert!(text.contains("outrigger_control_plane_api_connections 5\n"));
        assert!(text.contains("outrigger_control_plane_api_connections_refused_total 1\n"));
        assert!(text.contains("outrigger_control_plane_revoked_identities 1\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
        }
    }

    #[test]
    fn every_family_is_documented_and_every_documented_family_exists() {
        let documented: std::collections::BTreeSet<&str> = include_str!("../../docs/metrics.md")
            .lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|rest| rest.split('`').next())
            .filter(|name| name.starts_with("outrigger_control_plane_"))
            .collect();
        let metrics = Metrics::default();
        // A family shows up once it has a series; the refusals' come with the first one.
        metrics.api_refused(Endpoint::Watch, Refusal::BadRequest);
        let text = outrigger_api::exposition::classic(&metrics.render(Gauges::default()));
        let encoded: std::collections::BTreeSet<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|rest| rest.split(' ').next())
            .collect();
        assert_eq!(encoded, documented);
    }
}
