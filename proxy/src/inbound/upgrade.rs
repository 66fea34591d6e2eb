//! An extended CONNECT (RFC 8441) from a peer sidecar: the caller's app asked to upgrade
//! (WebSocket). It is authorized as the GET the app will see, then sent to the app as an
//! HTTP/1.1 Upgrade request on a connection of its own; on the app's 101 the peer gets
//! 200 and the bytes are copied both ways (docs/websocket.md).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, HOST, UPGRADE};
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::ext::Protocol;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::Inbound;
use super::accept::Caller;
use super::app::AppClient;
use crate::body::{ProxyBody, strip_hop_by_hop};
use crate::error::{ErrorCode, ProxyError};
use crate::metrics::RequestMetrics;
use crate::transport::connect_tcp;
use crate::{CLIENT_ID_HEADER, ORIG_PROTO_HEADER, opaque};

impl Inbound {
    pub(super) async fn forward_upgrade(
        &self,
        mut req: Request<Incoming>,
        protocol: Protocol,
        caller: &Caller,
        edge: &RequestMetrics,
        app: Option<&AppClient>,
    ) -> Response<ProxyBody> {
        let start = Instant::now();
        let _inflight = self.metrics.start();
        let from_peer = hyper::upgrade::on(&mut req);
        // A WebSocket handshake is a GET in HTTP/1.1; rules that name methods see that.
        *req.method_mut() = Method::GET;
        if let Some(denied) = self.authorize(&req, caller, edge) {
            self.metrics.record_error(denied.code, start.elapsed());
            return denied.into_response(self.metrics.service());
        }
        let policy = self.policy.load_full();
        let pass = match policy.protection.admit().await {
            Ok(pass) => pass,
            Err(refused) => {
                self.metrics.record_error(refused.code, start.elapsed());
                return refused.into_response(self.metrics.service());
            }
        };
        let result = match app {
            Some(app) => {
                let request = to_app(req, &protocol, caller);
                send_upgrade(request, app.addr(), self.apps.connect_timeout()).await
            }
            None => Err(ProxyError::new(
                ErrorCode::ConnectFailed,
                "this proxy has no app (set OUTRIGGER_APP_ADDR)",
            )),
        };
        // The pass covers the handshake; a tunnel is a connection, not a request in flight.
        pass.done(!matches!(&result, Ok(r) if !r.status().is_server_error()));
        let mut answer = match result {
            Ok(answer) => answer,
            Err(error) => {
                tracing::debug!(%error, "upgrade to the app failed");
                self.metrics.record_error(error.code, start.elapsed());
                return error.into_response(self.metrics.service());
            }
        };
        self.metrics
            .record_status(answer.status().as_u16(), start.elapsed());
        if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
            // The app declined to switch: the caller's app hears its answer.
            return crate::body::upstream(answer, None);
        }
        let to_app = hyper::upgrade::on(&mut answer);
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            match tokio::try_join!(from_peer, to_app) {
                Ok((peer, app)) => {
                    opaque::relay(TokioIo::new(peer), TokioIo::new(app), None, &metrics).await;
                }
                Err(error) => tracing::debug!(%error, "upgraded connection failed to start"),
            }
        });
        // 200 is the extended CONNECT's "switched"; the app's headers (its
        // Sec-WebSocket-Accept) go back to the caller's app through its sidecar.
        let (mut parts, _) = answer.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        parts.status = StatusCode::OK;
        Response::from_parts(parts, crate::body::full(Bytes::new()))
    }
}

/// The HTTP/1.1 Upgrade request the app sees, with the caller's verified identity.
fn to_app(req: Request<Incoming>, protocol: &Protocol, caller: &Caller) -> Request<Empty<Bytes>> {
    let (mut parts, _) = req.into_parts();
    let headers = &mut parts.headers;
    strip_hop_by_hop(headers);
    headers.remove(CLIENT_ID_HEADER);
    headers.remove(ORIG_PROTO_HEADER);
    if let Some(id) = caller.header() {
        headers.insert(CLIENT_ID_HEADER, id.clone());
    }
    if let Some(host) = parts
        .uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        headers.insert(HOST, host);
    }
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(upgrade) = HeaderValue::from_str(protocol.as_str()) {
        headers.insert(UPGRADE, upgrade);
    }
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    parts.uri = Uri::from(path);
    parts.version = Version::HTTP_11;
    Request::from_parts(parts, Empty::new())
}

/// Sends the upgrade on a connection of its own: the app's socket becomes the tunnel,
/// so it must not come from (or go back to) the keep-alive pool.
async fn send_upgrade(
    request: Request<Empty<Bytes>>,
    addr: SocketAddr,
    connect_timeout: Duration,
) -> Result<Response<Incoming>, ProxyError> {
    let tcp = connect_tcp(addr, connect_timeout).await?;
    let failed =
        |e: hyper::Error| ProxyError::new(ErrorCode::UpstreamReset, format!("app at {addr}: {e}"));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(failed)?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%addr, %error, "upgrade connection to the app ended");
        }
    });
    sender.send_request(request).await.map_err(failed)
}
