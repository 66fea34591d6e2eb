//! The plain-HTTP port (`--http`): liveness, readiness, the control plane's metrics, the
//! mesh's status (`GET /api/status`, what `outrigger status` prints), its golden metrics
//! (`GET /api/stats`, `/api/stats/timeline`, what `outrigger stat` prints) and the
//! dashboard that shows them all (`/`).

use std::sync::atomic::Ordering;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use outrigger_api::exposition;

use super::body::{RespBody, json, whole};
use super::{Shared, dashboard};
use crate::metrics::Gauges;

const TEXT: &str = "text/plain; charset=utf-8";

pub(crate) fn route(shared: &Shared, req: &Request<Incoming>) -> Response<RespBody> {
    if !matches!(req.method(), &Method::GET | &Method::HEAD) {
        let mut response = whole(StatusCode::METHOD_NOT_ALLOWED, TEXT, "use GET\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match req.uri().path() {
        "/live" => whole(StatusCode::OK, TEXT, "live\n"),
        // Ready once the CA and the policy are loaded and both listeners are serving;
        // not ready again while shutting down, so that traffic moves elsewhere.
        "/ready" => ready(shared),
        "/api/status" => {
            let version = shared.snapshots.current().version;
            let status = shared.proxies.status(version, shared.health.errors());
            json(StatusCode::OK, &status)
        }
        // Cluster mode: this replica's counts, summed by the status Lease's holder.
        "/api/convergence" => match &shared.convergence {
            Some(local) => json(StatusCode::OK, &local.report()),
            None => whole(StatusCode::NOT_FOUND, TEXT, "not in cluster mode\n"),
        },
        "/api/stats" => stats(shared, req.uri().query()),
        "/api/stats/timeline" => json(StatusCode::OK, &shared.stats.timeline()),
        "/metrics" => {
            let openmetrics = shared.metrics.render(Gauges {
                watchers: shared.watchers.count(),
                config_version: shared.snapshots.current().version,
                config_valid: shared.health.is_valid(),
                registered_instances: shared.registry.healthy_count(),
                api_connections: shared.api_connections.open(),
                revoked_identities: shared.revocations.borrow().len(),
            });
            let accept = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            let (text, content_type) = exposition::negotiate(openmetrics, accept);
            whole(StatusCode::OK, content_type, text)
        }
        path => dashboard::asset(path)
            .map(|(content_type, body)| whole(StatusCode::OK, content_type, body))
            .unwrap_or_else(|| whole(StatusCode::NOT_FOUND, TEXT, "not found\n")),
    }
}

/// `GET /api/stats?window=1m|5m|15m` (1m when absent).
fn stats(shared: &Shared, query: Option<&str>) -> Response<RespBody> {
    let window = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("window="))
        .unwrap_or("1m");
    match crate::stats::windows_in(window, shared.stats.window()) {
        Some(windows) => json(StatusCode::OK, &shared.stats.query(window, windows)),
        None => whole(
            StatusCode::BAD_REQUEST,
            TEXT,
            format!("window must be 1m, 5m or 15m, not {window:?}\n"),
        ),
    }
}

/// Ready once serving; in cluster mode, also once every watch has listed and while
/// none fails (a refused or missing one is named, so `kubectl describe` shows why).
fn ready(shared: &Shared) -> Response<RespBody> {
    if !shared.ready.load(Ordering::Acquire) {
        return whole(StatusCode::SERVICE_UNAVAILABLE, TEXT, "not ready\n");
    }
    let problems = shared
        .cluster_health
        .as_ref()
        .map(|h| h.problems())
        .unwrap_or_default();
    if problems.is_empty() {
        return whole(StatusCode::OK, TEXT, "ready\n");
    }
    let mut text = String::from("not ready:\n");
    for problem in problems {
        text.push_str(&problem);
        text.push('\n');
    }
    whole(StatusCode::SERVICE_UNAVAILABLE, TEXT, text)
}
