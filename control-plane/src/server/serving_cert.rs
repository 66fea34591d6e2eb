//! The control plane's own serving certificate: issued by its CA at start for
//! `spiffe://<td>/ns/outrigger/sa/control-plane` (the identity proxies expect) and for
//! the DNS names it is called by (`--serving-dns-name`: the Kubernetes API server calls
//! the admission webhook by its Service's name and checks that name only), and
//! re-issued in the background at 70% of its life, and at once when the issuer changes
//! (trust-anchor rotation), so that it always chains to an anchor that stays in the
//! bundle. A new certificate is used by the next handshake; open connections are not
//! touched.

use std::sync::Arc;
use std::time::Duration;

use outrigger_certs::{
    Ca, CertStore, RENEW_AT, SpiffeId, SpiffeIdError, WorkloadKey, renew_after, unix_now,
};
use tokio::sync::watch;
use tracing::{info, warn};

/// After a failed renewal, try again this soon (the current certificate is still valid).
const RETRY: Duration = Duration::from_secs(30);

/// The identity the control plane serves its API with, in `trust_domain`.
pub fn control_plane_identity(trust_domain: &str) -> Result<SpiffeId, SpiffeIdError> {
    SpiffeId::workload(trust_domain, "outrigger", "control-plane")
}

/// Issues a certificate for the identity and `dns_names` into `store`; returns its
/// `notAfter` (Unix seconds).
pub(crate) fn issue(
    ca: &Ca,
    ttl: Duration,
    dns_names: &[String],
    store: &CertStore,
) -> Result<i64, outrigger_certs::Error> {
    let identity = control_plane_identity(ca.trust_domain())?;
    let key = WorkloadKey::generate()?;
    let issued = ca.sign_csr_with_dns_names(&key.csr_pem(&identity)?, &identity, dns_names, ttl)?;
    store.set(key.certified_key(issued.chain)?);
    Ok(issued.not_after)
}

/// Re-issues the certificate at 70% of its remaining life, and when the CA's issuer
/// changes, until `stopping`.
pub(crate) async fn renew(
    mut ca: watch::Receiver<Arc<Ca>>,
    ttl: Duration,
    dns_names: Vec<String>,
    store: Arc<CertStore>,
    mut not_after: i64,
    mut stopping: watch::Receiver<bool>,
) {
    let mut signed_by = ca.borrow_and_update().issuer_der().clone();
    loop {
        let wait = renew_after(not_after, unix_now());
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            changed = ca.changed() => {
                if changed.is_err() {
                    return;
                }
                if *ca.borrow_and_update().issuer_der() == signed_by {
                    continue;
                }
            }
            _ = stopping.wait_for(|stop| *stop) => return,
        }
        let current = ca.borrow_and_update().clone();
        match issue(&current, ttl, &dns_names, &store) {
            Ok(next) => {
                not_after = next;
                signed_by = current.issuer_der().clone();
                info!(
                    expires_at = next,
                    "renewed the control plane's serving certificate"
                );
            }
            Err(e) => {
                warn!(
                    "cannot renew the control plane's serving certificate (retrying in {RETRY:?}): {e}"
                );
                // Wake again after RETRY: the renewal share of this much remaining life.
                not_after = unix_now() + (RETRY.as_secs_f64() / RENEW_AT) as i64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outrigger_certs::{init_ca, spiffe_id_of};
    use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};

    #[test]
    fn issues_the_control_plane_identity() {
        let dir = tempfile::tempdir().unwrap();
        init_ca(dir.path(), "example.org").unwrap();
        let ca = Ca::load(dir.path()).unwrap();
        let store = CertStore::new();
        let not_after = issue(&ca, Duration::from_secs(3600), &[], &store).unwrap();
        assert!(not_after > unix_now() + 3500);
        let cert = store.current().unwrap();
        assert_eq!(
            spiffe_id_of(&cert.cert[0]).unwrap().as_str(),
            "spiffe://example.org/ns/outrigger/sa/control-plane"
        );
    }

    #[test]
    fn carries_the_dns_names_the_api_server_calls_it_by() {
        let dir = tempfile::tempdir().unwrap();
        init_ca(dir.path(), "cluster.local").unwrap();
        let ca = Ca::load(dir.path()).unwrap();
        let store = CertStore::new();
        let names = [
            "outrigger-control-plane.outrigger.svc".to_string(),
            "outrigger-control-plane.outrigger.svc.cluster.local".to_string(),
        ];
        issue(&ca, Duration::from_secs(3600), &names, &store).unwrap();
        let cert = store.current().unwrap();
        let (_, x509) = X509Certificate::from_der(&cert.cert[0]).unwrap();
        let san = x509.subject_alternative_name().unwrap().unwrap();
        let mut dns = Vec::new();
        let mut uris = Vec::new();
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) => dns.push(n.to_string()),
                GeneralName::URI(u) => uris.push(u.to_string()),
                other => panic!("unexpected SAN {other:?}"),
            }
        }
        assert_eq!(dns, names);
        assert_eq!(
            uris,
            ["spiffe://cluster.local/ns/outrigger/sa/control-plane"],
            "proxies still find the one SPIFFE id"
        );
        // The subject is empty, so the SAN extension must be critical (RFC 5280 4.2.1.6).
        assert!(san.critical);
        assert_eq!(
            spiffe_id_of(&cert.cert[0]).unwrap().as_str(),
            "spiffe://cluster.local/ns/outrigger/sa/control-plane"
        );
    }
}
