//! The proxy's workload identity: its certificate (obtained and renewed by
//! `control::certify`) and the mesh's trust anchors. The certificate sits in a
//! `CertStore` that every TLS config reads at handshake time, so a renewal changes what
//! new handshakes present and closes no connection.

use std::sync::{Arc, OnceLock};

use outrigger_certs::{CertStore, SpiffeId, TrustBundle};
use tokio::sync::watch;

use crate::metrics::ProxyMetrics;

/// What the proxy knows about itself.
pub(crate) struct Identity {
    pub certs: Arc<CertStore>,
    /// The mesh's trust anchors: they verify peers and the control plane alike.
    pub bundle: Arc<TrustBundle>,
    pub trust_domain: String,
    id: OnceLock<SpiffeId>,
    /// `notAfter` of the current certificate (Unix seconds); 0 until the first one.
    expiry: watch::Sender<i64>,
    metrics: Arc<ProxyMetrics>,
}

impl Identity {
    pub(crate) fn new(
        bundle: Arc<TrustBundle>,
        trust_domain: &str,
        metrics: Arc<ProxyMetrics>,
    ) -> Arc<Self> {
        Arc::new(Identity {
            certs: CertStore::new(),
            bundle,
            trust_domain: trust_domain.to_string(),
            id: OnceLock::new(),
            expiry: watch::channel(0).0,
            metrics,
        })
    }

    /// The SPIFFE id, once the first certificate has been issued.
    pub(crate) fn id(&self) -> Option<&SpiffeId> {
        self.id.get()
    }

    /// Whether a certificate is held (it may still be renewing).
    pub(crate) fn has_certificate(&self) -> bool {
        *self.expiry.borrow() > 0
    }

    pub(crate) fn expires_at(&self) -> i64 {
        *self.expiry.borrow()
    }

    /// Resolves once the first certificate is held.
    pub(crate) async fn wait_certified(&self) {
        let mut rx = self.expiry.subscribe();
        let _ = rx.wait_for(|expiry| *expiry > 0).await;
    }

    /// Installs a newly issued certificate.
    pub(crate) fn install(
        &self,
        id: SpiffeId,
        key: Arc<rustls::sign::CertifiedKey>,
        not_after: i64,
    ) -> Result<(), String> {
        match self.id.get() {
            Some(current) if *current != id => {
                return Err(format!(
                    "control plane issued {id}, but this proxy is {current}; keeping the current certificate"
                ));
            }
            Some(_) => {}
            None => {
                if id.trust_domain() != self.trust_domain {
                    return Err(format!(
                        "issued identity {id} is not in trust domain {}",
                        self.trust_domain
                    ));
                }
                let _ = self.id.set(id);
            }
        }
        self.certs.set(key);
        self.metrics.certificate_expiry.set(not_after);
        self.expiry.send_replace(not_after);
        Ok(())
    }
}
