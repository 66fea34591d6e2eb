//! The outbound side: plain HTTP/1.1 or HTTP/2 from the local app, routed by authority to
//! a service, balanced over its endpoints, sent over a pooled mTLS HTTP/2 connection.

pub mod endpoint;
pub mod pool;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::balance::{Balanced, InFlight};
use crate::body::{ProxyBody, strip_hop_by_hop};
use crate::discovery::Discovery;
use crate::error::{ErrorCode, ProxyError};
use crate::metrics::{Direction, Registry, ServiceMetrics};
use crate::serve::{Drain, accept_loop, http_builder};
use crate::{CLIENT_ID_HEADER, ORIG_PROTO_HEADER};

pub struct Outbound {
    discovery: Arc<Discovery>,
    /// Requests for no known service are counted here, resolved once.
    unknown: Arc<ServiceMetrics>,
}

impl Outbound {
    pub fn new(discovery: Arc<Discovery>, metrics: &Registry) -> Arc<Self> {
        Arc::new(Outbound {
            discovery,
            unknown: metrics.service(Direction::Outbound, "unknown"),
        })
    }

    pub async fn serve(self: Arc<Self>, listener: TcpListener, drain: Drain, grace: Duration) {
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
                        async move { Ok::<_, Infallible>(this.proxy(req).await) }
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
        let table = self.discovery.table();
        let Some(target) = table.lookup(authority.host()).cloned() else {
            let error = ProxyError::new(
                ErrorCode::UnknownService,
                format!("no MeshService matches {:?}", authority.host()),
            );
            self.unknown.record_error(error.code, start.elapsed());
            return error.into_response(authority.host());
        };
        drop(table);
        let metrics = &target.metrics;
        let _inflight = metrics.start();
        let result = match target.pick(start) {
            None => Err(ProxyError::new(
                ErrorCode::NoEndpoints,
                "the service has no endpoints",
            )),
            Some(endpoint) => {
                // The balancer's view of the endpoint: in flight from now until the
                // response headers arrive, and their arrival is the latency sample.
                let mut in_flight = endpoint.load().start(start);
                let result = forward(endpoint, &mut in_flight, req, authority).await;
                in_flight.finish(result.is_ok(), Instant::now());
                result
            }
        };
        match result {
            Ok(response) => {
                metrics.record_status(response.status().as_u16(), start.elapsed());
                response.map(ProxyBody::Left)
            }
            Err(error) => {
                tracing::debug!(service = %metrics.service(), %error, "outbound request failed");
                metrics.record_error(error.code, start.elapsed());
                error.into_response(metrics.service())
            }
        }
    }
}

async fn forward(
    endpoint: &endpoint::Endpoint,
    in_flight: &mut InFlight<'_>,
    req: Request<Incoming>,
    authority: Authority,
) -> Result<Response<Incoming>, ProxyError> {
    let mut sender = endpoint.sender().await?;
    in_flight.dispatched(Instant::now());
    let (mut parts, body) = req.into_parts();
    // Between sidecars it is always HTTP/2, which needs scheme and authority in the URI.
    let mut uri = std::mem::take(&mut parts.uri).into_parts();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(authority);
    if uri.path_and_query.is_none() {
        uri.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    parts.uri = Uri::from_parts(uri)
        .map_err(|e| ProxyError::new(ErrorCode::BadRequest, format!("invalid URI: {e}")))?;
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(http::header::HOST);
    // Only the inbound sidecar may say who called; never pass on what the app claims.
    parts.headers.remove(CLIENT_ID_HEADER);
    parts.headers.remove(ORIG_PROTO_HEADER);
    if parts.version < Version::HTTP_2 {
        // So that the inbound side can speak to its app as our app spoke to us.
        parts
            .headers
            .insert(ORIG_PROTO_HEADER, HeaderValue::from_static("HTTP/1.1"));
    }
    parts.version = Version::HTTP_2;
    sender
        .send_request(Request::from_parts(parts, body))
        .await
        .map_err(|e| {
            ProxyError::new(
                ErrorCode::UpstreamReset,
                format!("{}: {e}", endpoint.addr()),
            )
        })
}

/// The authority a request is for: the URI's (absolute form, HTTP/2) or the Host header.
fn authority_of(req: &Request<Incoming>) -> Option<Authority> {
    if let Some(authority) = req.uri().authority() {
        return Some(authority.clone());
    }
    let host = req.headers().get(http::header::HOST)?;
    Authority::try_from(host.as_bytes()).ok()
}
