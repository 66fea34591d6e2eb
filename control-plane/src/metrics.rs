//! The control plane's own metrics, in the classic Prometheus text format. Counters are
//! plain atomics in a registry handed down from the server (no global): a request bumps
//! one already-resolved counter, never looks one up.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// Why a certificate request was refused; the label is the API's error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    BadRequest,
    InvalidCsr,
    Unauthenticated,
    PayloadTooLarge,
    RequestTimeout,
    Internal,
}

impl Refusal {
    const ALL: [Refusal; 6] = [
        Refusal::BadRequest,
        Refusal::InvalidCsr,
        Refusal::Unauthenticated,
        Refusal::PayloadTooLarge,
        Refusal::RequestTimeout,
        Refusal::Internal,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Refusal::BadRequest => "bad-request",
            Refusal::InvalidCsr => "invalid-csr",
            Refusal::Unauthenticated => "unauthenticated",
            Refusal::PayloadTooLarge => "payload-too-large",
            Refusal::RequestTimeout => "request-timeout",
            Refusal::Internal => "internal",
        }
    }
}

/// Counters of the control plane.
#[derive(Debug, Default)]
pub struct Metrics {
    issued_by_token: AtomicU64,
    issued_by_certificate: AtomicU64,
    refused: [AtomicU64; Refusal::ALL.len()],
}

impl Metrics {
    pub fn issued(&self, proven_by: ProvenBy) {
        let counter = match proven_by {
            ProvenBy::Token => &self.issued_by_token,
            ProvenBy::Certificate => &self.issued_by_certificate,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused(&self, reason: Refusal) {
        self.refused[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition (format 0.0.4). Gauges owned elsewhere are passed in.
    pub fn render(&self, watchers: usize, config_version: u64) -> String {
        let mut out = String::with_capacity(1024);
        let prefix = "outrigger_control_plane";
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "# HELP {prefix}_certificates_issued_total Workload certificates issued, by how the caller proved its identity.\n\
             # TYPE {prefix}_certificates_issued_total counter"
        );
        for (by, counter) in [
            (ProvenBy::Token, &self.issued_by_token),
            (ProvenBy::Certificate, &self.issued_by_certificate),
        ] {
            let _ = writeln!(
                out,
                "{prefix}_certificates_issued_total{{proven_by=\"{}\"}} {}",
                by.label(),
                counter.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP {prefix}_certificate_requests_refused_total Certificate requests refused, by reason.\n\
             # TYPE {prefix}_certificate_requests_refused_total counter"
        );
        for reason in Refusal::ALL {
            let _ = writeln!(
                out,
                "{prefix}_certificate_requests_refused_total{{reason=\"{}\"}} {}",
                reason.label(),
                self.refused[reason as usize].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP {prefix}_watchers Proxies connected to the config stream.\n\
             # TYPE {prefix}_watchers gauge\n\
             {prefix}_watchers {watchers}\n\
             # HELP {prefix}_config_version Version of the config snapshot being served.\n\
             # TYPE {prefix}_config_version gauge\n\
             {prefix}_config_version {config_version}"
        );
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
        let text = metrics.render(3, 42);
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
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
        }
    }
}
