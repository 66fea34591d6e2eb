//! HTTP/1.1 Upgrade (WebSocket) from the app, carried to the callee's sidecar as an
//! HTTP/2 extended CONNECT (RFC 8441) on the pooled mTLS connection; on its 200, the app
//! gets its 101 and the bytes are copied both ways (docs/websocket.md). The tunnel goes
//! around the request stack (no route timeout, retry or bulkhead suits a connection that
//! lives for hours), but through the balancer and the breaker (`dial.rs`).

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, UPGRADE};
use http::uri::Authority;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::ext::Protocol;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::dial::dial;
use super::request::prepare;
use super::{Outbound, Target};
use crate::body::ProxyBody;
use crate::error::{ErrorCode, ProxyError};
use crate::opaque;
use crate::resilience::replay::OutboundBody;

/// What an HTTP/1.1 request asks to upgrade to, if it is an upgrade this proxy tunnels:
/// `Upgrade: <token>` named by `Connection`, but not `h2c` (that one is answered as
/// HTTP/1.1: the mesh hop is HTTP/2 already).
pub(super) fn requested(req: &Request<Incoming>) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let upgrade = req.headers().get(UPGRADE)?;
    let named = req
        .headers()
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    let h2c = upgrade.as_bytes().eq_ignore_ascii_case(b"h2c");
    (named && !h2c).then(|| upgrade.clone())
}

impl Outbound {
    /// Tunnels the app's upgrade request to an instance of `target`.
    pub(super) async fn upgrade(
        &self,
        mut req: Request<Incoming>,
        upgrade: HeaderValue,
        authority: Authority,
        target: &Target,
        start: Instant,
    ) -> Response<ProxyBody> {
        let metrics = &target.metrics;
        let _inflight = metrics.start();
        let from_app = hyper::upgrade::on(&mut req);
        let mut answer = match self
            .connect_tunnel(req, &upgrade, authority, target, start)
            .await
        {
            Ok(answer) => answer,
            Err(error) => {
                tracing::debug!(service = %metrics.service(), %error, "upgrade failed");
                metrics.record_error(error.code, start.elapsed());
                return error.into_response(metrics.service());
            }
        };
        if answer.status() != StatusCode::OK {
            // The callee's sidecar or app refused (a 403 from its ServerPolicy, the
            // app's own 400): the app hears it as it was said.
            metrics.record_status(answer.status().as_u16(), start.elapsed());
            return crate::body::upstream(answer, None);
        }
        let to_peer = hyper::upgrade::on(&mut answer);
        metrics.record_status(StatusCode::SWITCHING_PROTOCOLS.as_u16(), start.elapsed());
        let (metrics, idle) = (metrics.clone(), target.resolved.idle_timeout);
        tokio::spawn(async move {
            match tokio::try_join!(from_app, to_peer) {
                Ok((app, peer)) => {
                    opaque::relay(TokioIo::new(app), TokioIo::new(peer), idle, &metrics).await;
                }
                Err(error) => tracing::debug!(%error, "upgraded connection failed to start"),
            }
        });
        switching(answer.headers(), upgrade)
    }

    /// Sends the extended CONNECT; its answer, 200 when the callee's app switched.
    async fn connect_tunnel(
        &self,
        req: Request<Incoming>,
        upgrade: &HeaderValue,
        authority: Authority,
        target: &Target,
        start: Instant,
    ) -> Result<Response<Incoming>, ProxyError> {
        let protocol = upgrade
            .to_str()
            .map(|p| Protocol::from(p.to_ascii_lowercase().as_str()))
            .map_err(|_| ProxyError::new(ErrorCode::BadRequest, "Upgrade is not text"))?;
        // An upgrade request has no body that a tunnel could carry before the switch.
        let (mut head, _body) = req.into_parts();
        // The Sec-WebSocket-* headers go through as they are: the callee's app answers the
        // caller's key, and the caller's app checks it, so neither sidecar needs to.
        prepare(&mut head, authority)?;
        head.method = Method::CONNECT;
        head.extensions.insert(protocol);
        let request = Request::from_parts(head, OutboundBody::Buffered(None));
        let healthy = |answer: &Response<Incoming>| !answer.status().is_server_error();
        dial(
            target,
            start,
            |endpoint| async move {
                let mut sender = endpoint.sender().await?;
                sender.send_request(request).await.map_err(|e| {
                    ProxyError::new(
                        ErrorCode::UpstreamReset,
                        format!("{}: {e}", endpoint.addr()),
                    )
                })
            },
            healthy,
        )
        .await
    }
}

/// The 101 for the app: the callee's answer headers (its `Sec-WebSocket-Accept` and
/// chosen subprotocol among them) with this hop's `Connection` and `Upgrade`.
fn switching(answer: &HeaderMap, upgrade: HeaderValue) -> Response<ProxyBody> {
    let mut response = Response::new(crate::body::full(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.extend(answer.clone());
    headers.remove(CONTENT_LENGTH);
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, upgrade);
    response
}
