//! The inbound side: mTLS from peer sidecars (the caller must chain to the mesh's trust
//! anchors and be of our trust domain), the caller's identity handed to the app in
//! `outrigger-client-id`, then the request forwarded to the app.

mod app;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use outrigger_certs::{ClientIdVerifier, peer_identity, server_config};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

pub use app::AppClient;

use crate::body::{ProxyBody, strip_hop_by_hop};
use crate::error::{ErrorCode, ProxyError};
use crate::identity::Identity;
use crate::metrics::{Registry, ServiceMetrics};
use crate::serve::{Drain, accept_loop, http_builder};
use crate::{CLIENT_ID_HEADER, ORIG_PROTO_HEADER};

/// A peer that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Inbound {
    tls: TlsAcceptor,
    app: Option<AppClient>,
    metrics: Arc<ServiceMetrics>,
    registry: Arc<Registry>,
}

impl Inbound {
    pub fn new(
        identity: &Identity,
        app: Option<AppClient>,
        metrics: Arc<ServiceMetrics>,
        registry: Arc<Registry>,
    ) -> Result<Arc<Self>, crate::Error> {
        let clients = ClientIdVerifier::required(identity.bundle.clone(), &identity.trust_domain);
        let config = server_config(identity.certs.clone(), clients, &[b"h2", b"http/1.1"])?;
        Ok(Arc::new(Inbound {
            tls: TlsAcceptor::from(config),
            app,
            metrics,
            registry,
        }))
    }

    pub async fn serve(self: Arc<Self>, listener: TcpListener, drain: Drain, grace: Duration) {
        let builder = Arc::new(http_builder());
        accept_loop(
            listener,
            drain,
            grace,
            "inbound",
            move |stream, peer, watcher| {
                let (this, builder) = (self.clone(), builder.clone());
                async move {
                    let Some((tls, client_id)) = this.handshake(stream, peer).await else {
                        return;
                    };
                    let service = service_fn(move |req| {
                        let (this, client_id) = (this.clone(), client_id.clone());
                        async move { Ok::<_, Infallible>(this.forward(req, client_id).await) }
                    });
                    let conn = builder.serve_connection(TokioIo::new(tls), service);
                    if let Err(error) = watcher.watch(conn).await {
                        tracing::debug!(%peer, %error, "inbound connection ended with an error");
                    }
                }
            },
        )
        .await;
    }

    /// The TLS handshake, and the caller's identity as a header value (made once per
    /// connection, not per request).
    async fn handshake(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Option<(tokio_rustls::server::TlsStream<TcpStream>, HeaderValue)> {
        let result = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.tls.accept(stream)).await;
        let tls = match result {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => {
                self.registry.tls_handshakes_failed.fetch_add(1, Relaxed);
                tracing::warn!(%peer, reason = %crate::tls_io_error(&error), "refused inbound connection");
                return None;
            }
            Err(_) => {
                self.registry.tls_handshakes_failed.fetch_add(1, Relaxed);
                tracing::warn!(%peer, "refused inbound connection: handshake timed out");
                return None;
            }
        };
        self.registry.tls_handshakes_ok.fetch_add(1, Relaxed);
        // The verifier has required a certificate with a SPIFFE id of our trust domain.
        let id = peer_identity(tls.get_ref().1.peer_certificates())?;
        let header = HeaderValue::from_str(id.as_str()).ok()?;
        tracing::debug!(%peer, client = %id, "inbound connection");
        Some((tls, header))
    }

    async fn forward(
        &self,
        mut req: Request<Incoming>,
        client_id: HeaderValue,
    ) -> Response<ProxyBody> {
        let start = Instant::now();
        let _inflight = self.metrics.start();
        let headers = req.headers_mut();
        strip_hop_by_hop(headers);
        // Whatever arrived is replaced: only the verified certificate says who called.
        headers.insert(CLIENT_ID_HEADER, client_id);
        let caller_spoke_http1 = headers.remove(ORIG_PROTO_HEADER).is_some();
        let result = match &self.app {
            Some(app) => app.send(req, caller_spoke_http1).await,
            None => Err(ProxyError::new(
                ErrorCode::ConnectFailed,
                "this proxy has no app (set OUTRIGGER_APP_ADDR)",
            )),
        };
        match result {
            Ok(response) => {
                self.metrics
                    .record_status(response.status().as_u16(), start.elapsed());
                response.map(ProxyBody::Left)
            }
            Err(error) => {
                tracing::debug!(%error, "inbound request failed");
                self.metrics.record_error(error.code, start.elapsed());
                error.into_response(self.metrics.service())
            }
        }
    }
}
