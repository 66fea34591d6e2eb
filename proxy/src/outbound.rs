//! The outbound side: plain HTTP/1.1 or HTTP/2 from the local app, routed by authority to
//! a service of the mesh table, whose runtime state is built on first use, balanced over
//! its endpoints, sent over a pooled mTLS HTTP/2 connection.

mod endpoint;
mod request;
mod stack;
mod target;
mod targets;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use http::uri::Authority;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::body::ProxyBody;
use crate::error::{ErrorCode, ProxyError};
use crate::mesh::MeshState;
use crate::metrics::{Direction, ProxyMetrics, ServiceMetrics};
use crate::serve::{Drain, accept_loop, http_builder};

pub(crate) use target::{Pick, Target, TargetContext};
pub(crate) use targets::Targets;

pub(crate) struct Outbound {
    mesh: Arc<MeshState>,
    targets: Arc<Targets>,
    /// Requests for no known service are counted here, resolved once.
    unknown: Arc<ServiceMetrics>,
}

impl Outbound {
    pub(crate) fn new(
        mesh: Arc<MeshState>,
        targets: Arc<Targets>,
        metrics: &ProxyMetrics,
    ) -> Arc<Self> {
        Arc::new(Outbound {
            mesh,
            targets,
            unknown: metrics.service(Direction::Outbound, "unknown"),
        })
    }

    pub(crate) async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        drain: Drain,
        grace: Duration,
    ) {
        let builder = Arc::new(http_builder());
        accept_loop(
            listener,
            drain,
            grace,
            "outbound",
            move |stream, peer, watcher| {
                let (this, builder) = (self.clone(), builder.clone());
                async move {
                    let service = service_fn(move |req| {
                        let this = this.clone();
                        async move {
                            let grpc = crate::error::is_grpc(req.headers());
                            let response = this.proxy(req).await;
                            // A gRPC caller hears of a mesh failure in gRPC's terms.
                            Ok::<_, Infallible>(if grpc {
                                crate::error::for_grpc_caller(response)
                            } else {
                                response
                            })
                        }
                    });
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    if let Err(error) = watcher.watch(conn).await {
                        tracing::debug!(%peer, %error, "outbound connection ended with an error");
                    }
                }
            },
        )
        .await;
    }

    async fn proxy(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let start = Instant::now();
        let Some(authority) = authority_of(&req) else {
            let error = ProxyError::new(
                ErrorCode::BadRequest,
                "no authority: send a Host header or an absolute URI",
            );
            self.unknown.record_error(error.code, start.elapsed());
            return error.into_response("");
        };
        let table = self.mesh.table();
        let Some(entry) = table.lookup(authority.host()) else {
            let error = ProxyError::new(
                ErrorCode::UnknownService,
                format!("no MeshService matches {:?}", authority.host()),
            );
            self.unknown.record_error(error.code, start.elapsed());
            return error.into_response(authority.host());
        };
        let target = self.targets.get(entry, start);
        drop(table);
        let metrics = &target.metrics;
        let _inflight = metrics.start();
        let request = stack::AppRequest {
            request: req,
            authority,
        };
        match stack::stack(&target).oneshot(request).await {
            Ok(response) => {
                metrics.record_status(response.status().as_u16(), start.elapsed());
                response.map(ProxyBody::Left)
            }
            Err(stack::RouteError { error, fallback }) => {
                tracing::debug!(service = %metrics.service(), %error, "outbound request failed");
                metrics.record_error(error.code, start.elapsed());
                match (fallback, error.code) {
                    (Some(fallback), ErrorCode::CircuitOpen) => fallback_response(fallback),
                    _ => error.into_response(metrics.service()),
                }
            }
        }
    }
}

/// The policy's stand-in answer while every endpoint's breaker is open, marked so that a
/// person can tell it from the service's own.
fn fallback_response(fallback: &outrigger_api::Fallback) -> Response<ProxyBody> {
    let mut response = Response::new(crate::body::full(fallback.body.clone()));
    *response.status_mut() =
        http::StatusCode::from_u16(fallback.status).unwrap_or(http::StatusCode::OK);
    let headers = response.headers_mut();
    for (name, value) in &fallback.headers {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(name, value);
        }
    }
    headers.insert("outrigger-fallback", HeaderValue::from_static("true"));
    response
}

/// The authority a request is for: the URI's (absolute form, HTTP/2) or the Host header.
fn authority_of(req: &Request<Incoming>) -> Option<Authority> {
    if let Some(authority) = req.uri().authority() {
        return Some(authority.clone());
    }
    let host = req.headers().get(http::header::HOST)?;
    Authority::try_from(host.as_bytes()).ok()
}
