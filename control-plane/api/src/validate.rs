//! The checks serde cannot make on one resource: value ranges, duration orderings, retry
//! conditions, HTTP methods, identity globs. Pure functions, shared by the control plane
//! (which points each problem at its file and line) and by anyone who builds a spec in
//! code. Checks that need other resources (does `targetRef` name a MeshService?) are the
//! control plane's.
//!
//! # Identity globs (`authorization.rules[].from`)
//!
//! A glob is a SPIFFE id of the mesh's shape, `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`,
//! where the namespace and the service account may each be:
//! - a literal segment: `orders`;
//! - `*`, any whole segment: `spiffe://cluster.local/ns/*/sa/*`;
//! - a literal prefix then `*`, any segment that starts with it:
//!   `spiffe://cluster.local/ns/shop/sa/pay*`.
//!
//! `*` matches any run of characters except `/` (so never more than one segment), may
//! appear at most once per segment and only at its end. The trust domain is literal and
//! must be the mesh's: a peer of another trust domain cannot connect at all.

use std::time::Duration;

use crate::duration::HumanDuration;
use crate::resource::RequestMatch;
use crate::retry_condition::RetryCondition;
use crate::server_policy::ServerPolicySpec;
use crate::traffic_policy::{BackendRef, Fallback, Retries, Timeouts, TrafficPolicySpec};

/// The only `targetRef.kind` there is.
pub const TARGET_KIND: &str = "MeshService";

/// The HTTP methods a `match.methods` list may hold (RFC 9110 and PATCH), upper-case.
pub const HTTP_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// One problem: the field, as a path from the document's root
/// (`spec.retries.backoff.base`, `spec.routes[0].match.methods[1]`), and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Collects problems with their paths.
#[derive(Default)]
struct Problems(Vec<FieldError>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Whether `method` is one of [`HTTP_METHODS`] (case matters: `get` is refused).
pub fn is_http_method(method: &str) -> bool {
    HTTP_METHODS.contains(&method)
}

/// Checks an identity glob (see the module docs) against the mesh's trust domain.
pub fn check_identity_glob(glob: &str, trust_domain: &str) -> Result<(), String> {
    let shape = || {
        format!(
            "invalid identity glob {glob:?}: expected spiffe://{trust_domain}/ns/<namespace>/sa/<service-account>, \
             where '*' may be a whole segment or end one (e.g. spiffe://{trust_domain}/ns/ops/sa/*)"
        )
    };
    let rest = glob.strip_prefix("spiffe://").ok_or_else(shape)?;
    let (td, path) = rest.split_once('/').ok_or_else(shape)?;
    if td != trust_domain {
        return Err(if td.contains('*') {
            format!("invalid identity glob {glob:?}: the trust domain cannot hold '*'")
        } else {
            format!(
                "identity glob {glob:?} is not in the trust domain {trust_domain} (no caller from another trust domain can connect)"
            )
        });
    }
    let parts: Vec<&str> = path.split('/').collect();
    let shaped = parts.len() == 4
        && parts[0] == "ns"
        && parts[2] == "sa"
        && is_glob_segment(parts[1])
        && is_glob_segment(parts[3]);
    if shaped { Ok(()) } else { Err(shape()) }
}

/// A literal segment, `*`, or a literal prefix and a trailing `*`.
fn is_glob_segment(segment: &str) -> bool {
    let literal = segment.strip_suffix('*').unwrap_or(segment);
    let chars_ok = literal
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    let starred = literal.len() != segment.len();
    chars_ok && (starred || (!literal.is_empty() && literal != "." && literal != ".."))
}

impl TrafficPolicySpec {
    /// Every problem of this spec, with paths under `spec.`.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut p = Problems::default();
        target_kind(&mut p, &self.target_ref.kind);
        if let Some(timeouts) = &self.timeouts {
            check_timeouts(&mut p, "spec.timeouts", timeouts);
        }
        if let Some(retries) = &self.retries {
            check_retries(&mut p, "spec.retries", retries);
        }
        if let Some(cb) = &self.circuit_breaker {
            let at = "spec.circuitBreaker";
            if let Some(rate) = &cb.failure_rate {
                unit_interval(
                    &mut p,
                    &format!("{at}.failureRate.threshold"),
                    rate.threshold,
                );
                positive(&mut p, &format!("{at}.failureRate.window"), rate.window);
            }
            if let Some(base) = cb.base_ejection {
                positive(&mut p, &format!("{at}.baseEjection"), base);
            }
            if let Some(max) = cb.max_ejection {
                positive(&mut p, &format!("{at}.maxEjection"), max);
            }
            if let (Some(base), Some(max)) = (cb.base_ejection, cb.max_ejection)
                && base > max
            {
                p.add(
                    format!("{at}.baseEjection"),
                    format!(
                        "{} is more than maxEjection {}",
                        fmt(base.get()),
                        fmt(max.get())
                    ),
                );
            }
            if let Some(percent) = cb.max_ejected_percent
                && percent > 100
            {
                p.add(
                    format!("{at}.maxEjectedPercent"),
                    format!("{percent} is more than 100"),
                );
            }
        }
        if let Some(bulkhead) = &self.bulkhead {
            for (field, value) in [
                ("maxConcurrentRequests", bulkhead.max_concurrent_requests),
                (
                    "maxConnectionsPerEndpoint",
                    bulkhead.max_connections_per_endpoint,
                ),
            ] {
                if value == Some(0) {
                    p.add(
                        format!("spec.bulkhead.{field}"),
                        "must be at least 1 (0 would refuse every request)",
                    );
                }
            }
        }
        if let Some(fallback) = &self.fallback {
            check_fallback(&mut p, "spec.fallback", fallback);
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, route) in self.routes.iter().enumerate() {
            let at = format!("spec.routes[{i}]");
            if let Some(name) = &route.name {
                if !is_route_name(name) {
                    p.add(
                        format!("{at}.name"),
                        format!("{name:?} is not a route name: 1 to 63 characters of a-z, 0-9 and '-', starting with a letter"),
                    );
                } else if !names.insert(name.as_str()) {
                    p.add(
                        format!("{at}.name"),
                        format!("{name:?} names an earlier route too"),
                    );
                }
            }
            check_match(&mut p, &format!("{at}.match"), &route.matches);
            if let Some(timeouts) = &route.timeouts {
                check_timeouts(&mut p, &format!("{at}.timeouts"), timeouts);
            }
            if let Some(retries) = &route.retries {
                check_retries(&mut p, &format!("{at}.retries"), retries);
            }
            if let Some(fallback) = &route.fallback {
                check_fallback(&mut p, &format!("{at}.fallback"), fallback);
            }
            if let Some(backends) = &route.backends {
                check_backends(&mut p, &format!("{at}.backends"), backends);
            }
        }
        if !self.backends.is_empty() {
            check_backends(&mut p, "spec.backends", &self.backends);
        }
        p.0
    }
}

/// A route name is a metric label value and a log field: short, lower case, no spaces.
fn is_route_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A backend list sends traffic somewhere: at least one weight above 0, each service
/// named once. (That each service exists is checked by the control plane, which sees
/// every MeshService.)
fn check_backends(p: &mut Problems, at: &str, backends: &[BackendRef]) {
    if backends.is_empty() {
        p.add(
            at,
            "must name at least one backend (omit it to send to the target alone)",
        );
        return;
    }
    if backends.iter().all(|b| b.weight == 0) {
        p.add(at, "every weight is 0: no request could be sent");
    }
    for (i, backend) in backends.iter().enumerate() {
        if backend.service.is_empty() {
            p.add(format!("{at}[{i}].service"), "must name a MeshService");
        } else if backends[..i].iter().any(|b| b.service == backend.service) {
            p.add(
                format!("{at}[{i}].service"),
                format!("{:?} is named twice", backend.service),
            );
        }
    }
}

impl ServerPolicySpec {
    /// Every problem of this spec, with paths under `spec.`; identity globs must be of
    /// `trust_domain`.
    pub fn validate(&self, trust_domain: &str) -> Vec<FieldError> {
        let mut p = Problems::default();
        target_kind(&mut p, &self.target_ref.kind);
        if let Some(authz) = &self.authorization {
            for (i, rule) in authz.rules.iter().enumerate() {
                let at = format!("spec.authorization.rules[{i}]");
                if rule.from.is_empty() {
                    p.add(
                        format!("{at}.from"),
                        format!(
                            "empty: name at least one identity (spiffe://{trust_domain}/ns/*/sa/* for any)"
                        ),
                    );
                }
                for (j, glob) in rule.from.iter().enumerate() {
                    if let Err(message) = check_identity_glob(glob, trust_domain) {
                        p.add(format!("{at}.from[{j}]"), message);
                    }
                }
                if let Some(matches) = &rule.matches {
                    check_match(&mut p, &format!("{at}.match"), matches);
                    if !matches.headers.is_empty() {
                        p.add(
                            format!("{at}.match.headers"),
                            "authorization rules cannot match on headers: the caller chooses them (match headers on TrafficPolicy routes)",
                        );
                    }
                }
            }
        }
        if let Some(limit) = &self.rate_limit {
            if limit.requests_per_second == 0 {
                p.add(
                    "spec.rateLimit.requestsPerSecond",
                    "must be at least 1 (leave rateLimit out for no limit)",
                );
            }
            if limit.burst == Some(0) {
                p.add(
                    "spec.rateLimit.burst",
                    "must be at least 1 (0 would refuse every request)",
                );
            }
        }
        if let Some(concurrency) = &self.concurrency {
            let adaptive = concurrency.adaptive == Some(true);
            match (concurrency.max, adaptive) {
                (Some(_), true) => p.add(
                    "spec.concurrency",
                    "set either max or adaptive: true, not both",
                ),
                (None, false) => p.add(
                    "spec.concurrency",
                    "set either max: N or adaptive: true (leave concurrency out for no limit)",
                ),
                (Some(0), false) => p.add(
                    "spec.concurrency.max",
                    "must be at least 1 (0 would refuse every request)",
                ),
                _ => {}
            }
        }
        p.0
    }
}

fn target_kind(p: &mut Problems, kind: &str) {
    if kind != TARGET_KIND {
        p.add(
            "spec.targetRef.kind",
            format!("{kind:?} is not supported (expected {TARGET_KIND})"),
        );
    }
}

fn check_timeouts(p: &mut Problems, at: &str, timeouts: &Timeouts) {
    for (field, value) in [
        ("connect", timeouts.connect),
        ("request", timeouts.request),
        ("idle", timeouts.idle),
    ] {
        if let Some(value) = value {
            positive(p, &format!("{at}.{field}"), value);
        }
    }
}

fn check_retries(p: &mut Problems, at: &str, retries: &Retries) {
    if let Some(per_try) = retries.per_try_timeout {
        positive(p, &format!("{at}.perTryTimeout"), per_try);
    }
    for (i, condition) in retries.retry_on.iter().flatten().enumerate() {
        if let Err(unknown) = condition.parse::<RetryCondition>() {
            p.add(format!("{at}.retryOn[{i}]"), unknown.to_string());
        }
    }
    if let Some(backoff) = &retries.backoff
        && backoff.base > backoff.max
    {
        p.add(
            format!("{at}.backoff.base"),
            format!(
                "{} is more than max {}",
                fmt(backoff.base.get()),
                fmt(backoff.max.get())
            ),
        );
    }
    if let Some(budget) = &retries.budget {
        unit_interval(p, &format!("{at}.budget.ratio"), budget.ratio);
        positive(p, &format!("{at}.budget.window"), budget.window);
    }
}

fn check_fallback(p: &mut Problems, at: &str, fallback: &Fallback) {
    if !(100..=599).contains(&fallback.status) {
        p.add(
            format!("{at}.status"),
            format!("{} is not an HTTP status (100 to 599)", fallback.status),
        );
    }
    for (name, value) in &fallback.headers {
        if !is_header_name(name) {
            p.add(
                format!("{at}.headers.{name}"),
                format!("{name:?} is not a valid header name"),
            );
        } else if !is_header_value(value) {
            p.add(
                format!("{at}.headers.{name}"),
                format!("{value:?} is not a valid header value"),
            );
        }
    }
}

fn check_match(p: &mut Problems, at: &str, matches: &RequestMatch) {
    if let Some(prefix) = &matches.path_prefix
        && !prefix.starts_with('/')
    {
        p.add(
            format!("{at}.pathPrefix"),
            format!("{prefix:?} does not start with '/'"),
        );
    }
    for (i, method) in matches.methods.iter().enumerate() {
        if !is_http_method(method) {
            p.add(
                format!("{at}.methods[{i}]"),
                format!(
                    "{method:?} is not an HTTP method (expected one of {}, upper-case)",
                    HTTP_METHODS.join(", ")
                ),
            );
        }
    }
    for (name, value) in &matches.headers {
        if !is_header_name(name) {
            p.add(
                format!("{at}.headers.{name}"),
                format!("{name:?} is not a valid header name"),
            );
        } else if !is_header_value(value) {
            p.add(
                format!("{at}.headers.{name}"),
                format!("{value:?} is not a valid header value"),
            );
        }
    }
}

fn unit_interval(p: &mut Problems, at: &str, value: f64) {
    if !(0.0..=1.0).contains(&value) {
        p.add(at, format!("{value} is not between 0 and 1"));
    }
}

fn positive(p: &mut Problems, at: &str, value: HumanDuration) {
    if value.get().is_zero() {
        p.add(at, "must be more than 0s (leave it out for the default)");
    }
}

fn fmt(d: Duration) -> String {
    crate::duration::format_duration(d)
}

/// An RFC 9110 token.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Visible ASCII, spaces and tabs; no CR or LF.
fn is_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

#[cfg(test)]
mod tests;
