//! `POST /v1/register` (mTLS): a proxy's heartbeat. It reports the config version the
//! proxy has applied and, for a proxy in front of an app, that app instance and its
//! health. The instance must belong to a MeshService whose identity is the caller's.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use outrigger_api::{Heartbeat, HeartbeatResponse};
use tracing::debug;

use super::api_error::ApiFailure;
use super::authn;
use super::body::{RespBody, json};
use super::query::check_proxy_id;
use super::refusal::refused;
use super::request_body::read_body;
use super::{ConnInfo, Shared};
use crate::metrics::Endpoint;
use crate::policy::ServiceKey;
use crate::proxies::Seen;
use crate::registry::RegisterError;

pub(crate) async fn handle(
    shared: &Shared,
    conn: &ConnInfo,
    req: Request<Incoming>,
) -> Response<RespBody> {
    match heartbeat(shared, conn, req).await {
        Ok(response) => json(StatusCode::OK, &response),
        Err(failure) => {
            refused(shared, conn, Endpoint::Register, &failure);
            failure.into_response()
        }
    }
}

async fn heartbeat(
    shared: &Shared,
    conn: &ConnInfo,
    req: Request<Incoming>,
) -> Result<HeartbeatResponse, ApiFailure> {
    let identity = authn::client(shared, conn, "POST /v1/register")?;
    let body = read_body(req.into_body()).await?;
    let beat: Heartbeat = serde_json::from_slice(&body).map_err(|e| {
        ApiFailure::BadRequest(format!(
            "body is not a heartbeat ({{\"proxy_id\": ..., \"applied_version\": N, \"instance\": {{...}}}}): {e}"
        ))
    })?;
    check_proxy_id(&beat.proxy_id).map_err(ApiFailure::BadRequest)?;
    debug!(
        proxy = %beat.proxy_id,
        %identity,
        applied_version = beat.applied_version,
        "heartbeat"
    );
    let seen = Seen {
        proxy_id: &beat.proxy_id,
        identity,
        peer: conn.peer,
    };
    // A proxy id the table has no room for registers nothing either.
    shared
        .proxies
        .admit(&seen)
        .map_err(|e| ApiFailure::TooManyProxies(e.to_string()))?;
    let registered = shared
        .registry
        .heartbeat(&beat.proxy_id, identity, beat.instance.as_ref());
    // Its applied version counts even if its instance is refused.
    let accepted = match (&registered, &beat.instance) {
        (Ok(_), Some(i)) => Some((
            ServiceKey::new(&i.namespace, &i.service),
            i.address
                .parse::<std::net::SocketAddr>()
                .map_or_else(|_| i.address.clone(), |a| a.to_string()),
        )),
        _ => None,
    };
    shared
        .proxies
        .heartbeat(seen, beat.applied_version, accepted)
        .map_err(|e| ApiFailure::TooManyProxies(e.to_string()))?;
    registered.map_err(|e| match e {
        RegisterError::Invalid(m) => ApiFailure::BadRequest(m),
        RegisterError::Forbidden(m) => ApiFailure::Forbidden(m),
        RegisterError::Full(m) => ApiFailure::TooManyInstances(m),
    })?;
    Ok(HeartbeatResponse {
        expires_in_ms: shared.registry.ttl().as_millis() as u64,
    })
}
