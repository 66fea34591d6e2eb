//! `POST /v1/certificates`: sign a sidecar's CSR for the identity it proved, by its
//! current certificate (renewal, over mTLS) or else by a bootstrap token. The identity
//! always comes from the proof, never from the CSR.

use std::time::SystemTime;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use outrigger_api::{CertificateRequest, CertificateResponse};
use outrigger_certs::SpiffeId;
use tracing::{error, info};

use super::api_error::ApiFailure;
use super::body::{RespBody, json};
use super::refusal::refused;
use super::request_body::read_body;
use super::{ConnInfo, Shared};
use crate::kubernetes::ReviewError;
use crate::metrics::{Endpoint, ProvenBy};
use crate::token::VerifiedToken;

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
            refused(shared, conn, Endpoint::Certificates, &failure);
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

    // The cheap check first: a key the CA would not sign for (a 16,384-bit RSA key, an
    // unknown algorithm) is refused before any proof is checked (a TokenReview is a call
    // to the API server) and before the CSR's signature is verified.
    let csr = outrigger_certs::csr::inspect(&request.csr).map_err(|e| match e {
        outrigger_certs::Error::Csr(reason) => {
            ApiFailure::InvalidCsr(format!("invalid certificate signing request: {reason}"))
        }
        other => ApiFailure::InvalidCsr(other.to_string()),
    })?;

    // A verified client certificate wins: a sidecar may only renew itself, and a token
    // sent along (say, still in its environment) must not let it become someone else.
    let (identity, proven_by, issued_at, proof) = match (&conn.identity, &request.token) {
        (Some(identity), _) => (
            identity.clone(),
            ProvenBy::Certificate,
            conn.issued_at,
            "certificate",
        ),
        (None, Some(token)) => {
            let token = bootstrap_identity(shared, token).await?;
            (
                token.identity,
                ProvenBy::Token,
                token.issued_at,
                "bootstrap token",
            )
        }
        (None, None) => {
            return Err(ApiFailure::Unauthenticated(
                "no proof of identity: send a bootstrap token, or renew over mTLS with your current certificate".into(),
            ));
        }
    };
    shared
        .revocations
        .borrow()
        .check(&identity, issued_at, proof)
        .map_err(|revoked| ApiFailure::Revoked(revoked.to_string()))?;
    // Sidecars name no identity in their CSR; one that names another than its proof's is
    // a misconfigured workload (or someone trying its luck), and is told so.
    if let Some(asked) = &csr.asks_for
        && asked != identity.as_str()
    {
        return Err(ApiFailure::Forbidden(format!(
            "the CSR asks for {asked}, but the {proof} is for {identity}: a {proof} only gets a certificate for its own identity"
        )));
    }

    // One CA for the certificate and the bundle sent with it, even mid-rotation.
    let ca = shared.ca.borrow().clone();
    let issued = ca
        .sign_checked(&csr, &identity, shared.cert_ttl)
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

/// Who a bootstrap token proves, and since when: a local token (`v1.`, from `outrigger
/// token create`) is checked here; in cluster mode any other is a service-account token
/// for the API server's TokenReview, which says nothing of when it was issued (it counts
/// as issued now: deleting the service account is how such tokens are revoked).
async fn bootstrap_identity(shared: &Shared, token: &str) -> Result<VerifiedToken, ApiFailure> {
    let local = token.trim_start().starts_with("v1.");
    match &shared.token_review {
        Some(reviewer) if !local => {
            let identity = reviewer.review(token).await.map_err(|e| match e {
                ReviewError::Denied(_) => ApiFailure::Unauthenticated(e.to_string()),
                ReviewError::Unavailable(_) => {
                    error!("{e}");
                    ApiFailure::Internal
                }
            })?;
            Ok(VerifiedToken {
                identity,
                issued_at: outrigger_certs::unix_now(),
            })
        }
        _ => shared
            .tokens
            .verify_token(token, SystemTime::now())
            .map_err(|e| ApiFailure::Unauthenticated(e.to_string())),
    }
}
