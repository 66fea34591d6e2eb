//! The outbound side: plain HTTP/1.1 or HTTP/2 from the local app, routed by authority to
//! a service of the mesh table, whose runtime state is built on first use, balanced over
//! its endpoints, sent over a pooled mTLS HTTP/2 connection. A connection redirected here
//! by iptables is routed by its original destination instead (`transparent.rs`).

mod backends;
mod dial;
mod endpoint;
pub(crate) mod request;
mod stack;
mod target;
mod targets;
mod transparent;
mod upgrade;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use http::uri::Authority;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::body::ProxyBody;
use crate::config::HttpLimits;
use crate::error::{ErrorCode, ProxyError};
use crate::hardening::{ClientConnection, Hardening};
use crate::mesh::{MeshState, ServiceEntry};
use crate::metrics::{Direction, ProxyMetrics, ServiceMetrics};
use crate::serve::{Drain, Served, accept_loop, http_builder};
use crate::trace::{Exchange, Tracer};

pub(crate) use target::{Pick, Target, TargetContext};
pub(crate) use targets::Targets;
pub(crate) use transparent::Interception;

pub(crate) struct Outbound {
    mesh: Arc<MeshState>,
    targets: Arc<Targets>,
    /// Requests for no known service are counted here, resolved once.
    unknown: Arc<ServiceMetrics>,
    /// Connections to outside the mesh are counted here, resolved once.
    egress: Arc<ServiceMetrics>,
    interception: Interception,
    registry: Arc<ProxyMetrics>,
    tracer: Tracer,
    /// What the listener refuses from the app (docs/security.md).
    hardening: Arc<Hardening>,
}

impl Outbound {
    pub(crate) fn new(
        mesh: Arc<MeshState>,
        targets: Arc<Targets>,
        metrics: &Arc<ProxyMetrics>,
        interception: Interception,
        tracer: Tracer,
        limits: &HttpLimits,
    ) -> Arc<Self> {
        Arc::new(Outbound {
            mesh,
            targets,
            unknown: metrics.service(Direction::Outbound, "unknown"),
            egress: metrics.service(Direction::Outbound, "egress"),
            interception,
            registry: metrics.clone(),
            tracer,
            hardening: Hardening::new(limits, metrics, Direction::Outbound),
        })
    }

    pub(crate) async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        drain: Drain,
        grace: Duration,
    ) {
        let mut builder = http_builder();
        self.hardening.configure(&mut builder);
        let builder = Arc::new(builder);
        let local = listener
            .local_addr()
            .expect("a bound listener has a local address");
        accept_loop(
            listener,
            drain,
            grace,
            "outbound",
            move |stream, peer, served| {
                let (this, builder) = (self.clone(), builder.clone());
                async move {
                    let Some(client) = this.hardening.admit(peer) else {
                        return;
                    };
                    let client = Arc::new(client);
                    match crate::original_dst::original_dst(&stream, local) {
                        Some(destination) => {
                            this.transparent(stream, destination, &builder, served, client)
                                .await
                        }
                        // Explicit mode: the app called the proxy itself, by Host.
                        None => {
                            this.serve_http(&builder, stream, None, served, client)
                                .await
                        }
                    }
                    tracing::trace!(%peer, "outbound connection closed");
                }
            },
        )
        .await;
    }

    /// Serves HTTP on `io`: routed by each request's authority, or all to `routed`.
    async fn serve_http<I>(
        self: Arc<Self>,
        builder: &auto::Builder<TokioExecutor>,
        io: I,
        routed: Option<Arc<ServiceEntry>>,
        served: Served,
        client: Arc<ClientConnection>,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io = client.watch_heads(io);
        let connection = client.clone();
        let service = service_fn(move |mut req| {
            let (this, routed) = (self.clone(), routed.clone());
            let ticket = connection.admit_request(&req, Direction::Outbound);
            async move {
                let ticket = match ticket {
                    Ok(ticket) => ticket,
                    Err(refused) => return Ok(refused.response()),
                };
                let grpc = crate::error::is_grpc(req.headers());
                let mut exchange = this.tracer.begin(&mut req);
                let response = this.proxy(req, routed.as_ref(), exchange.as_mut()).await;
                // A gRPC caller hears of a mesh failure in gRPC's terms.
                let response = crate::error::for_caller(grpc, response);
                this.tracer.end(exchange, &response);
                ticket.answered();
                Ok::<_, Infallible>(response)
            }
        });
        // With upgrades, so that an app's `Upgrade: websocket` can switch (`upgrade.rs`).
        // `Served` shuts this connection type down gracefully too (hyper-util 0.1.21 has
        // it implement GracefulConnection): a drain stops its HTTP requests. Once
        // a connection has switched, hyper hands its socket to the tunnel and this future
        // ends, so a drain never waits on a WebSocket; tunnels end with the process.
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        if let Err(error) = served.serve(conn, client.abusive()).await {
            client.ended(&*error);
            tracing::debug!(%error, "outbound connection ended with an error");
        }
    }

    async fn proxy(
        &self,
        req: Request<Incoming>,
        routed: Option<&Arc<ServiceEntry>>,
        exchange: Option<&mut Exchange>,
    ) -> Response<ProxyBody> {
        let start = Instant::now();
        if let Some(entry) = routed {
            // A redirected connection: its destination chose the service, whatever the
            // Host says; the Host (or the destination) still goes to the callee.
            let authority = authority_of(&req)
                .or_else(|| self.interception.authority_of(entry))
                .unwrap_or_else(|| Authority::from_static("unknown"));
            let target = self.targets.get(entry, start);
            return self.send(req, authority, target, start, exchange).await;
        }
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
        self.send(req, authority, target, start, exchange).await
    }

    async fn send(
        &self,
        mut req: Request<Incoming>,
        authority: Authority,
        target: Arc<Target>,
        start: Instant,
        exchange: Option<&mut Exchange>,
    ) -> Response<ProxyBody> {
        let target = &target;
        // One header lookup on the ordinary path; the rest only for an upgrade.
        if req.headers().contains_key(http::header::UPGRADE)
            && let Some(upgrade) = upgrade::requested(&req)
        {
            // Boxed: the tunnel's future is several KiB, and would make every request's
            // future as large (hyper moves each request's future whole).
            return Box::pin(self.upgrade(req, upgrade, authority, target, start)).await;
        }
        let route_index = target
            .resolved
            .route(req.method(), req.uri().path(), req.headers());
        let route = target.resolved.route_at(route_index);
        // Traffic shifting: the route's backends, by weight (else the service itself).
        let backend = match &route.backends {
            Some(backends) => {
                let table = self.mesh.table();
                backends::choose(backends, target, &table, &self.targets, start)
            }
            None => target.clone(),
        };
        // Counted under the service that served it, so a canary's numbers stand apart;
        // a named route has series of its own.
        let service = &backend.metrics;
        let _inflight = service.start();
        let metrics = match &route.name {
            Some(name) => &service.edge("", name),
            None => service.requests(),
        };
        if let Some(exchange) = exchange {
            // Only for a request being recorded: who serves it, its route, its retries.
            let entry = &backend.entry;
            let retries =
                exchange.called(entry.key(), entry.identity.as_str(), route.name.as_deref());
            req.extensions_mut().insert(retries);
        }
        let grpc = crate::error::is_grpc(req.headers());
        let request = stack::AppRequest {
            request: req,
            authority,
            route: route_index,
        };
        match stack::stack(target, &backend).oneshot(request).await {
            Ok(response) => {
                metrics.record_status(response.status().as_u16(), start.elapsed());
                crate::body::upstream(response, grpc.then_some(&metrics.grpc))
            }
            Err(stack::RouteError { error, fallback }) => {
                tracing::debug!(service = %service.service(), %error, "outbound request failed");
                metrics.record_error(error.code, start.elapsed());
                match (fallback, error.code) {
                    (Some(fallback), ErrorCode::CircuitOpen) => fallback_response(fallback),
                    _ => error.into_response(service.service()),
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
pub(crate) fn authority_of<B>(req: &Request<B>) -> Option<Authority> {
    if let Some(authority) = req.uri().authority() {
        return Some(authority.clone());
    }
    let host = req.headers().get(http::header::HOST)?;
    Authority::try_from(host.as_bytes()).ok()
}
