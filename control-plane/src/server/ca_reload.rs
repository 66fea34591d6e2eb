//! Trust-anchor rotation without a restart: the data dir's `ca/` is watched (as the
//! policy dir is), and after each settled change the CA is loaded again
//! (`outrigger_certs::rotation` describes the steps on disk). A new trust bundle is
//! trusted at once for client certificates (the next handshake), and pushed to every
//! proxy on the watch stream; a new issuer signs the next certificate, and the control
//! plane's own serving certificate is re-issued under it at once (see `serving_cert`).
//! A CA that fails to load (a step half-written) is logged and the last good one kept.

use std::path::PathBuf;
use std::sync::Arc;

use outrigger_certs::{Ca, CertStore, ClientIdVerifier, TrustBundle, server_config};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use crate::reload::settled_change;
use crate::snapshot::SnapshotPublisher;

/// The API's TLS: the serving certificate in `certs`; client certificates are optional
/// (a first-time sidecar only holds a token) and verified against `ca`'s bundle.
pub(crate) fn api_tls(
    ca: &Ca,
    certs: Arc<CertStore>,
) -> Result<TlsAcceptor, outrigger_certs::Error> {
    let bundle = TrustBundle::from_pem(ca.trust_bundle_pem())?;
    let config = server_config(
        certs,
        ClientIdVerifier::optional(bundle, ca.trust_domain()),
        &[b"http/1.1"],
    )?;
    Ok(TlsAcceptor::from(config))
}

/// What a change of the CA on disk updates.
pub(crate) struct CaReload {
    pub data_dir: PathBuf,
    /// The CA that signs (certificate requests, the serving certificate).
    pub ca: watch::Sender<Arc<Ca>>,
    /// The API's TLS, used by the next accepted connection.
    pub tls: watch::Sender<TlsAcceptor>,
    pub certs: Arc<CertStore>,
    pub snapshots: SnapshotPublisher,
}

impl CaReload {
    /// Reloads after each settled burst of changes in `ca/` until `stopping`.
    pub(crate) async fn run(
        self,
        watcher: notify::RecommendedWatcher,
        mut changes: mpsc::Receiver<()>,
        mut stopping: watch::Receiver<bool>,
    ) {
        // Kept alive for as long as this task runs.
        let _watcher = watcher;
        while settled_change(&mut changes, &mut stopping).await {
            let dir = self.data_dir.clone();
            match tokio::task::spawn_blocking(move || Ca::load(&dir)).await {
                Ok(Ok(ca)) => self.apply(ca),
                Ok(Err(e)) => {
                    warn!("cannot load the CA after a change (keeping the last one): {e}")
                }
                Err(e) => warn!("loading the CA panicked: {e}"),
            }
        }
    }

    /// Uses `next` if its bundle or issuer differ from the current CA's.
    pub(crate) fn apply(&self, next: Ca) {
        let current = self.ca.borrow().clone();
        if next.trust_domain() != current.trust_domain() {
            warn!(
                "the CA on disk is for trust domain {}, not {}: ignored (a trust domain changes with a restart)",
                next.trust_domain(),
                current.trust_domain()
            );
            return;
        }
        let bundle_changed = next.trust_bundle_pem() != current.trust_bundle_pem();
        let issuer_changed = next.issuer_der() != current.issuer_der();
        if !bundle_changed && !issuer_changed {
            return;
        }
        if bundle_changed {
            match api_tls(&next, self.certs.clone()) {
                Ok(tls) => {
                    self.tls.send_replace(tls);
                }
                Err(e) => {
                    warn!("the new trust bundle is unusable (keeping the last CA): {e}");
                    return;
                }
            }
        }
        let bundle = next.trust_bundle_pem().to_string();
        self.ca.send_replace(Arc::new(next));
        if bundle_changed {
            let anchors = outrigger_certs::certs_from_pem(&bundle).map_or(0, |a| a.len());
            let version = self.snapshots.publish_trust_bundle(bundle);
            info!(
                anchors,
                ?version,
                "trust bundle changed: pushed to every proxy"
            );
        }
        if issuer_changed {
            info!("issuer changed: new certificates are signed by the new issuer");
        }
    }
}
