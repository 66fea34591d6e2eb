//! `POST /v1/stats` (mTLS): one interval of a sidecar's measurements. The client
//! certificate says who the caller of its client-side series is, so a sidecar can only
//! report calls as itself.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use outrigger_api::{StatsAccepted, StatsReport};
use tracing::warn;

use super::api_error::ApiFailure;
use super::body::{RespBody, json};
use super::certificates::read_body_up_to;
use super::query::check_proxy_id;
use super::{ConnInfo, Shared};

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
            warn!(peer = %conn.peer, reason = %failure.message(), "refused a stats report");
            failure.into_response()
        }
    }
}

async fn ingest(
    shared: &Shared,
    conn: &ConnInfo,
    req: Request<Incoming>,
) -> Result<StatsAccepted, ApiFailure> {
    let Some(identity) = &conn.identity else {
        return Err(ApiFailure::Unauthenticated(
            "POST /v1/stats requires a client certificate (mTLS)".into(),
        ));
    };
    let body = read_body_up_to(req.into_body(), MAX_REPORT).await?;
    let report: StatsReport = serde_json::from_slice(&body)
        .map_err(|e| ApiFailure::BadRequest(format!("body is not a stats report: {e}")))?;
    check_proxy_id(&report.proxy_id).map_err(ApiFailure::BadRequest)?;
    let accepted = shared
        .stats
        .ingest(identity, &report)
        .map_err(ApiFailure::BadRequest)?;
    Ok(StatsAccepted { accepted })
}
