//! Getting and renewing the workload certificate. The first time, the bootstrap token
//! proves who we are; after that, the current certificate does (mTLS). Failures are
//! retried with backoff while the current certificate stays in use.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use outrigger_api::{CertificateRequest, CertificateResponse};
use outrigger_certs::{WorkloadKey, certs_from_pem, renew_after, spiffe_id_of, unix_now};

use super::ControlPlaneClient;
use crate::backoff::Backoff;
use crate::identity::Identity;

/// Keeps a valid certificate installed for as long as the proxy runs.
pub(crate) async fn certify(cp: Arc<ControlPlaneClient>, identity: Arc<Identity>, token: String) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        // Renew over mTLS while the current certificate is valid; otherwise the token.
        let now = unix_now();
        let mutual = identity.has_certificate() && identity.expires_at() > now;
        match issue(&cp, &identity, &token, mutual).await {
            Ok(not_after) => {
                backoff.reset();
                let delay = renew_after(not_after, unix_now());
                tracing::info!(
                    identity = %identity.id().map(|id| id.as_str()).unwrap_or("?"),
                    expires_in = ?Duration::from_secs((not_after - now).max(0) as u64),
                    renew_in = ?delay,
                    how = if mutual { "renewal" } else { "token" },
                    "certificate issued"
                );
                tokio::time::sleep(delay).await;
            }
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(%error, retry_in = ?delay, "cannot get a certificate");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// One issuance: new key, CSR, answer installed. Returns the new `notAfter`.
async fn issue(
    cp: &ControlPlaneClient,
    identity: &Identity,
    token: &str,
    mutual: bool,
) -> Result<i64, String> {
    // A new key each time: a leaked key is only good until the next renewal.
    let key = WorkloadKey::generate().map_err(|e| e.to_string())?;
    let request = CertificateRequest {
        csr: key.csr_pem_without_identity().map_err(|e| e.to_string())?,
        token: (!mutual).then(|| token.to_string()),
    };
    let response: CertificateResponse = cp
        .json(Method::POST, "/v1/certificates", &request, mutual)
        .await
        .map_err(|e| e.to_string())?;
    let chain = certs_from_pem(&response.certificate_chain).map_err(|e| e.to_string())?;
    let leaf = &chain[0];
    let id = spiffe_id_of(leaf).map_err(|e| e.to_string())?;
    let not_after = response.expires_at;
    // The bundle is updated before the certificate: a new anchor must be trusted before
    // anything signed under it is presented.
    if let Err(error) = identity.bundle.update(&response.trust_bundle) {
        tracing::warn!(%error, "ignoring an unreadable trust bundle from the control plane");
    }
    let certified = key.certified_key(chain).map_err(|e| e.to_string())?;
    identity.install(id, certified, not_after)?;
    Ok(not_after)
}
