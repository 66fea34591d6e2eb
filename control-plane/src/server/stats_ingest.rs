//! `POST /v1/stats` (mTLS): one interval of a sidecar's measurements. The client
//! certificate says who the caller of its client-side series is, so a sidecar can only
//! report calls as itself; and its server-side series are kept only for a MeshService
//! whose identity is its own, so it can only report calls to itself.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use outrigger_api::{Side, StatsAccepted, StatsReport};
use outrigger_certs::SpiffeId;
use tracing::debug;

use super::api_error::ApiFailure;
use super::authn;
use super::body::{RespBody, json};
use super::query::check_proxy_id;
use super::refusal::refused;
use super::request_body::read_body_up_to;
use super::{ConnInfo, Shared};
use crate::metrics::Endpoint;
use crate::policy::ServiceKey;
use crate::snapshot::MeshConfig;

/// A report of a sidecar calling a few hundred services, histograms included.
const MAX_REPORT: usize = 8 << 20;

pub(crate) async fn handle(
    shared: &Shared,
    conn: &ConnInfo,
    req: Request<Incoming>,
) -> Response<RespBody> {
    match ingest(shared, conn, req).await {
        Ok(accepted) => json(StatusCode::OK, &accepted),
        Err(failure) => {
            refused(shared, conn, Endpoint::Stats, &failure);
            failure.into_response()
        }
    }
}

async fn ingest(
    shared: &Shared,
    conn: &ConnInfo,
    req: Request<Incoming>,
) -> Result<StatsAccepted, ApiFailure> {
    let identity = authn::client(shared, conn, "POST /v1/stats")?;
    let body = read_body_up_to(req.into_body(), MAX_REPORT).await?;
    let mut report: StatsReport = serde_json::from_slice(&body)
        .map_err(|e| ApiFailure::BadRequest(format!("body is not a stats report: {e}")))?;
    check_proxy_id(&report.proxy_id).map_err(ApiFailure::BadRequest)?;
    let config = shared.snapshots.current();
    report.series.retain(|series| {
        let own = series.side == Side::Client || serves(&config, &series.service, identity);
        if !own {
            debug!(
                proxy = %report.proxy_id,
                %identity,
                service = %series.service,
                "dropped server-side stats of a service that is not the caller's"
            );
        }
        own
    });
    let accepted = shared
        .stats
        .ingest(identity, &report)
        .map_err(ApiFailure::BadRequest)?;
    Ok(StatsAccepted { accepted })
}

/// Whether `service` (`name.namespace`) is a MeshService whose identity is `identity`.
fn serves(config: &MeshConfig, service: &str, identity: &SpiffeId) -> bool {
    let Some((name, namespace)) = service.split_once('.') else {
        return false;
    };
    config
        .service(&ServiceKey::new(namespace, name))
        .is_some_and(|s| s.identity == identity.as_str())
}
