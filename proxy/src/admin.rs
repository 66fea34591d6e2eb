//! The admin listener: `/live`, `/ready` (a certificate and a config are held),
//! `/metrics` (Prometheus text), `/config` (what the proxy enforces now, as JSON) and
//! `/stats` (the totals behind the statistics shipped to the control plane).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use outrigger_api::exposition;
use tokio::net::TcpListener;

use crate::identity::Identity;
use crate::mesh::MeshState;
use crate::metrics::ProxyMetrics;
use crate::outbound::Targets;
use crate::serve::{Drain, accept_loop, http_builder};
use crate::trace::TraceCounters;

pub(crate) struct Admin {
    pub identity: Arc<Identity>,
    pub mesh: Arc<MeshState>,
    pub targets: Arc<Targets>,
    pub metrics: Arc<ProxyMetrics>,
    pub trace_counters: Arc<TraceCounters>,
}

impl Admin {
    pub(crate) async fn serve(self: Arc<Self>, listener: TcpListener, drain: Drain) {
        let builder = Arc::new(http_builder());
        // Admin connections are scrapes and probes: no need to wait for them on shutdown.
        accept_loop(
            listener,
            drain,
            Duration::ZERO,
            "admin",
            move |stream, _peer, served| {
                let (this, builder) = (self.clone(), builder.clone());
                async move {
                    let service = service_fn(move |req| {
                        let this = this.clone();
                        async move { Ok::<_, Infallible>(this.handle(&req)) }
                    });
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let _ = served.serve(conn, std::future::pending()).await;
                }
            },
        )
        .await;
    }

    fn handle(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        }
        match req.uri().path() {
            "/live" => text(StatusCode::OK, "live\n"),
            "/ready" => self.ready(),
            "/metrics" => {
                let circuits = crate::circuits_view::registry(&self.targets.built());
                let tracing = self.trace_counters.registry();
                self.metrics.sample_runtime();
                let openmetrics = self.metrics.encode(&[&circuits, &tracing]);
                let accept = req
                    .headers()
                    .get(http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok());
                let (body, content_type) = exposition::negotiate(openmetrics, accept);
                let mut response = text(StatusCode::OK, body);
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, http::HeaderValue::from_static(content_type));
                response
            }
            "/config" => self.config(),
            "/stats" => {
                let body = self.metrics.tallies_json();
                let mut response = text(StatusCode::OK, body.to_string());
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                response
            }
            "/circuits" => {
                let body = crate::circuits_view::json(&self.targets.built());
                let mut response = text(StatusCode::OK, body.to_string());
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                response
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: try /live, /ready, /metrics, /config, /circuits\n",
            ),
        }
    }

    fn ready(&self) -> Response<Full<Bytes>> {
        match (self.identity.has_certificate(), self.mesh.has_config()) {
            (true, true) => text(StatusCode::OK, "ready\n"),
            (false, _) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: no certificate yet\n",
            ),
            (true, false) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: no config yet\n",
            ),
        }
    }

    /// What the proxy enforces now: every service of the mesh table, and whether its
    /// runtime state is built (it has been called recently). Written straight into the
    /// body, without an intermediate JSON tree: with 10,000 services, that tree would
    /// cost the sidecar several megabytes at every call.
    fn config(&self) -> Response<Full<Bytes>> {
        let table = self.mesh.table();
        let built: std::collections::HashSet<String> = self
            .targets
            .built()
            .iter()
            .map(|t| t.name().to_string())
            .collect();
        let mut entries: Vec<_> = table.entries().collect();
        entries.sort_by(|a, b| a.key().cmp(b.key()));
        let view = ConfigView {
            identity: self.identity.id().map(|id| id.as_str()),
            certificate_expires_at: self.identity.expires_at(),
            config_version: self.mesh.version(),
            services: entries
                .iter()
                .map(|e| ServiceConfig {
                    name: e.name(),
                    namespace: e.namespace(),
                    identity: e.identity.as_str(),
                    endpoints: &e.endpoints,
                    active: built.contains(e.key()),
                })
                .collect(),
        };
        let body = serde_json::to_vec(&view).unwrap_or_default();
        let mut response = text(StatusCode::OK, body);
        response.headers_mut().insert(
            CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        response
    }
}

/// `/config`, as JSON.
#[derive(serde::Serialize)]
struct ConfigView<'a> {
    identity: Option<&'a str>,
    certificate_expires_at: i64,
    config_version: u64,
    services: Vec<ServiceConfig<'a>>,
}

#[derive(serde::Serialize)]
struct ServiceConfig<'a> {
    name: &'a str,
    namespace: &'a str,
    identity: &'a str,
    endpoints: &'a [std::net::SocketAddr],
    active: bool,
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}
