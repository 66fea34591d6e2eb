//! `POST /v1/certificates`: sign a sidecar's CSR for the identity it proved, by its
//! current certificate (renewal, over mTLS) or else by a bootstrap token. The identity
//! always comes from the proof, never from the CSR.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper::body::Incoming;
use outrigger_api::{CertificateRequest, CertificateResponse};
use outrigger_certs::SpiffeId;
use tracing::{error, info, warn};

use super::api_error::ApiFailure;
use super::body::{RespBody, json};
use super::{ConnInfo, Shared};
use crate::kubernetes::ReviewError;
use crate::metrics::ProvenBy;

/// A CSR and a token fit in a few KiB; anything much larger is not a certificate request.
pub(crate) const MAX_BODY: usize = 64 * 1024;
/// A client that has sent its headers gets this long to send the body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn handle(
    shared: &Shared,
    conn: &ConnInfo,
    req: Request<Incoming>,
) -> Response<RespBody> {
    match issue(shared, conn, req).await {
        Ok((response, identity, proven_by)) => {
            shared.metrics.issued(proven_by);
            info!(
                %identity,
                proven_by = proven_by.label(),
                expires_at = response.expires_at,
                peer = %conn.peer,
                "issued certificate"
            );
            json(StatusCode::OK, &response)
        }
        Err(failure) => {
            shared.metrics.refused(failure.refusal());
            warn!(
                peer = %conn.peer,
                client_cert = conn.identity.as_ref().map(|id| id.as_str()).unwrap_or("-"),
                reason = %failure.message(),
                "refused certificate request"
            );
            failure.into_response()
        }
    }
}

async fn issue(
    shared: &Shared,
    conn: &ConnInfo,
    req: Request<Incoming>,
) -> Result<(CertificateResponse, SpiffeId, ProvenBy), ApiFailure> {
    let body = read_body(req.into_body()).await?;
    let request: CertificateRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiFailure::BadRequest(format!(
            "body is not a certificate request ({{\"csr\": ..., \"token\": ...}}): {e}"
        ))
    })?;

    // A verified client certificate wins: a sidecar may only renew itself, and a token
    // sent along (say, still in its environment) must not let it become someone else.
    let (identity, proven_by) = match (&conn.identity, &request.token) {
        (Some(identity), _) => (identity.clone(), ProvenBy::Certificate),
        (None, Some(token)) => (bootstrap_identity(shared, token).await?, ProvenBy::Token),
        (None, None) => {
            return Err(ApiFailure::Unauthenticated(
                "no proof of identity: send a bootstrap token, or renew over mTLS with your current certificate".into(),
            ));
        }
    };

    // One CA for the certificate and the bundle sent with it, even mid-rotation.
    let ca = shared.ca.borrow().clone();
    let issued = ca
        .sign_csr(&request.csr, &identity, shared.cert_ttl)
        .map_err(|e| match e {
            outrigger_certs::Error::Csr(reason) => {
                ApiFailure::InvalidCsr(format!("invalid certificate signing request: {reason}"))
            }
            other => {
                error!(%identity, "signing failed: {other}");
                ApiFailure::Internal
            }
        })?;
    let response = CertificateResponse {
        certificate_chain: issued.chain_pem,
        trust_bundle: ca.trust_bundle_pem().to_string(),
        expires_at: issued.not_after,
    };
    Ok((response, identity, proven_by))
}

/// Who a bootstrap token proves: a local token (`v1.`, from `outrigger token create`)
/// is checked here; in cluster mode any other is a service-account token for the API
/// server's TokenReview.
async fn bootstrap_identity(shared: &Shared, token: &str) -> Result<SpiffeId, ApiFailure> {
    let local = token.trim_start().starts_with("v1.");
    match &shared.token_review {
        Some(reviewer) if !local => reviewer.review(token).await.map_err(|e| match e {
            ReviewError::Denied(_) => ApiFailure::Unauthenticated(e.to_string()),
            ReviewError::Unavailable(_) => {
                error!("{e}");
                ApiFailure::Internal
            }
        }),
        _ => shared
            .tokens
            .verify(token, SystemTime::now())
            .map_err(|e| ApiFailure::Unauthenticated(e.to_string())),
    }
}

pub(crate) async fn read_body(body: Incoming) -> Result<Bytes, ApiFailure> {
    read_body_up_to(body, MAX_BODY).await
}

/// [`read_body`] with another limit (an AdmissionReview carries a whole pod).
pub(crate) async fn read_body_up_to(body: Incoming, limit: usize) -> Result<Bytes, ApiFailure> {
    let collected = tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, limit).collect())
        .await
        .map_err(|_| ApiFailure::RequestTimeout)?;
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(ApiFailure::PayloadTooLarge(limit)),
        Err(e) => Err(ApiFailure::BadRequest(format!(
            "could not read the request body: {e}"
        ))),
    }
}
