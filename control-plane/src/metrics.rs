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
    reloads_ok: AtomicU64,
    reloads_error: AtomicU64,
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

    /// A reload of the policy dir, valid or not.
    pub fn reloaded(&self, ok: bool) {
        let counter = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_error
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition (format 0.0.4). Gauges owned elsewhere are passed in.
    pub fn render(&self, gauges: Gauges) -> String {
        let Gauges {
            watchers,
            config_version,
            config_valid,
            registered_instances,
        } = gauges;
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
             {prefix}_config_version {config_version}\n\
             # HELP {prefix}_config_valid 1 if the policy files on disk are valid; 0 if the last reload failed and the last good version is still served.\n\
             # TYPE {prefix}_config_valid gauge\n\
             {prefix}_config_valid {}\n\
             # HELP {prefix}_config_reloads_total Reloads of the policy dir, by result.\n\
             # TYPE {prefix}_config_reloads_total counter\n\
             {prefix}_config_reloads_total{{result=\"ok\"}} {}\n\
             {prefix}_config_reloads_total{{result=\"error\"}} {}\n\
             # HELP {prefix}_registered_instances Healthy app instances registered by their sidecars.\n\
             # TYPE {prefix}_registered_instances gauge\n\
             {prefix}_registered_instances {registered_instances}",
            u8::from(config_valid),
            self.reloads_ok.load(Ordering::Relaxed),
            self.reloads_error.load(Ordering::Relaxed),
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
        metrics.reloaded(true);
        metrics.reloaded(false);
        metrics.reloaded(false);
        let text = metrics.render(Gauges {
            watchers: 3,
            config_version: 42,
            config_valid: false,
            registered_instances: 2,
        });
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
        assert!(text.ends_with("outrigger_control_plane_registered_instances 2\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
        }
    }
}
