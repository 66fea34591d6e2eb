//! `POST /v1/register` (mTLS): a proxy's heartbeat. It reports the config version the
//! proxy has applied and, for a proxy in front of an app, that app instance and its
//! health. The instance must belong to a MeshService whose identity is the caller's.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use outrigger_api::{Heartbeat, HeartbeatResponse};
use tracing::{debug, warn};

use super::api_error::ApiFailure;
use super::body::{RespBody, json};
use super::certificates::read_body;
use super::query::check_proxy_id;
use super::{ConnInfo, Shared};
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
            warn!(
                peer = %conn.peer,
                client_cert = conn.identity.as_ref().map(|id| id.as_str()).unwrap_or("-"),
                reason = %failure.message(),
                "refused registration"
            );
            failure.into_response()
        }
    }
}

async fn heartbeat(
    shared: &Shared,
    conn: &ConnInfo,
    req: Request<Incoming>,
) -> Result<HeartbeatResponse, ApiFailure> {
    let Some(identity) = &conn.identity else {
        return Err(ApiFailure::Unauthenticated(
            "POST /v1/register requires a client certificate (mTLS): get one from POST /v1/certificates first".into(),
        ));
    };
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
    let seen = Seen {
        proxy_id: &beat.proxy_id,
        identity,
        peer: conn.peer,
    };
    shared
        .proxies
        .heartbeat(seen, beat.applied_version, accepted);
    registered.map_err(|e| match e {
        RegisterError::Invalid(m) => ApiFailure::BadRequest(m),
        RegisterError::Forbidden(m) => ApiFailure::Forbidden(m),
    })?;
    Ok(HeartbeatResponse {
        expires_in_ms: shared.registry.ttl().as_millis() as u64,
    })
}
