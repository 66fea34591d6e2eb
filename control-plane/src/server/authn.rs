//! Who an mTLS caller is, for the endpoints that require a client certificate: the
//! identity the TLS verifier checked, unless that certificate was issued before its
//! identity was revoked (`crate::revocation`).

use outrigger_certs::SpiffeId;

use super::api_error::ApiFailure;
use super::{ConnInfo, Shared};

/// The caller's identity, or why `what` (e.g. `GET /v1/watch`) is refused to it.
pub(crate) fn client<'c>(
    shared: &Shared,
    conn: &'c ConnInfo,
    what: &str,
) -> Result<&'c SpiffeId, ApiFailure> {
    let Some(identity) = &conn.identity else {
        return Err(ApiFailure::Unauthenticated(format!(
            "{what} requires a client certificate (mTLS): get one from POST /v1/certificates first"
        )));
    };
    shared
        .revocations
        .borrow()
        .check(identity, conn.issued_at, "certificate")
        .map_err(|revoked| ApiFailure::Revoked(revoked.to_string()))?;
    Ok(identity)
}
