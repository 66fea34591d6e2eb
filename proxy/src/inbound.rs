//! The inbound side: connections from peer sidecars over mTLS (the caller must chain to
//! the mesh's trust anchors and be of our trust domain) and, when the ServerPolicy is
//! permissive, from plaintext callers too; then authorization, the caller's identity
//! handed to the app in `outrigger-client-id`, and the request forwarded to the app.
//! A peer that negotiated ALPN `outrigger-tcp/1` gets opaque TCP instead (`opaque.rs`),
//! and a redirected connection goes to the app port it was meant for (`ports.rs`).

mod accept;
mod app;
mod denial_log;
mod opaque;
mod policy;
mod ports;
mod protect;
mod upgrade;
mod whole;

pub(crate) use policy::{InboundPolicy, InboundPolicyCell};

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use outrigger_certs::{ClientIdVerifier, server_config};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub(crate) use ports::AppPorts;

use self::accept::{Accepted, Caller, accept};
use self::app::AppClient;
use self::denial_log::DenialLog;
use crate::body::{ProxyBody, strip_hop_by_hop};
use crate::config::HttpLimits;
use crate::detect::{Prefixed, detect};
use crate::error::{ErrorCode, ProxyError};
use crate::hardening::{ClientConnection, Hardening};
use crate::identity::Identity;
use crate::metrics::{Denied, Direction, ProxyMetrics, RequestMetrics, ServiceMetrics};
use crate::original_dst::original_dst;
use crate::resilience::deadline;
use crate::serve::{Drain, Served, accept_loop, http_builder};
use crate::trace::Tracer;
use crate::{CLIENT_ID_HEADER, ORIG_PROTO_HEADER};

pub(crate) struct Inbound {
    tls: TlsAcceptor,
    /// The ServerPolicy: mTLS mode (read per connection) and authorization (per request).
    policy: Arc<InboundPolicyCell>,
    apps: AppPorts,
    metrics: Arc<ServiceMetrics>,
    registry: Arc<ProxyMetrics>,
    /// How long a plaintext (permissive) connection may take to show its protocol.
    detect_timeout: Duration,
    tracer: Tracer,
    /// What the listener refuses from callers (docs/security.md).
    hardening: Arc<Hardening>,
    /// Denials are logged at most once per (caller, reason) per period.
    denial_log: DenialLog,
}

/// What the inbound side counts into: its service's metrics (by caller: what /metrics
/// shows and the stats shipper reads) and the registry (TLS handshakes).
pub(crate) struct InboundMetrics {
    pub service: Arc<ServiceMetrics>,
    pub registry: Arc<ProxyMetrics>,
}

/// How the inbound side reads its callers: protocol detection's patience (permissive
/// plaintext), and the HTTP limits.
pub(crate) struct InboundLimits<'a> {
    pub detect_timeout: Duration,
    pub http: &'a HttpLimits,
}

/// An HTTP connection's caller, its app, and its place in the listener.
struct Conn {
    caller: Arc<Caller>,
    app: Option<Arc<AppClient>>,
    served: Served,
    client: Arc<ClientConnection>,
}

impl Inbound {
    pub(crate) fn new(
        identity: &Identity,
        policy: Arc<InboundPolicyCell>,
        apps: AppPorts,
        metrics: InboundMetrics,
        limits: InboundLimits<'_>,
        tracer: Tracer,
    ) -> Result<Arc<Self>, crate::Error> {
        let InboundMetrics {
            service: metrics,
            registry,
        } = metrics;
        let clients = ClientIdVerifier::required(identity.bundle.clone(), &identity.trust_domain);
        let alpn = [&b"h2"[..], b"http/1.1", crate::opaque::ALPN];
        let config = server_config(identity.certs.clone(), clients, &alpn)?;
        Ok(Arc::new(Inbound {
            tls: TlsAcceptor::from(config),
            policy,
            apps,
            metrics,
            hardening: Hardening::new(limits.http, &registry, Direction::Inbound),
            registry,
            detect_timeout: limits.detect_timeout,
            tracer,
            denial_log: DenialLog::default(),
        }))
    }

    pub(crate) async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        drain: Drain,
        grace: Duration,
    ) {
        let mut builder = http_builder();
        // Lets a peer sidecar send an extended CONNECT (RFC 8441) for a WebSocket
        // (`upgrade.rs`); only a SETTINGS flag, nothing on the ordinary path.
        builder.http2().enable_connect_protocol();
        self.hardening.configure(&mut builder);
        let builder = Arc::new(builder);
        let local = listener
            .local_addr()
            .expect("a bound listener has a local address");
        accept_loop(
            listener,
            drain,
            grace,
            "inbound",
            move |stream, peer, served| {
                let (this, builder) = (self.clone(), builder.clone());
                async move {
                    let Some(client) = this.hardening.admit(peer) else {
                        return;
                    };
                    let client = Arc::new(client);
                    // Redirected by iptables: the app port the peer dialled.
                    let port = original_dst(&stream, local).map(|d| d.port());
                    let permissive = this.policy.load().permissive();
                    let Some((accepted, caller)) =
                        accept(&this.tls, &this.registry, stream, peer, permissive).await
                    else {
                        return;
                    };
                    let caller = Arc::new(caller);
                    match accepted {
                        Accepted::Tls(tls)
                            if tls.get_ref().1.alpn_protocol() == Some(crate::opaque::ALPN) =>
                        {
                            this.serve_opaque(*tls, &caller, peer).await;
                        }
                        Accepted::Tls(tls) => {
                            let app = this.apps.client(port);
                            let conn = Conn {
                                caller,
                                app,
                                served,
                                client,
                            };
                            this.serve_connection(&builder, *tls, conn, peer).await;
                        }
                        Accepted::Plain(mut tcp) => {
                            // Permissive plaintext: HTTP, or opaque bytes for the app port.
                            let (detected, read) = match detect(&mut tcp, this.detect_timeout).await
                            {
                                Ok(detected) => detected,
                                Err(_) => return,
                            };
                            let io = Prefixed::new(read, tcp);
                            if detected.is_http() {
                                let app = this.apps.client(port);
                                let conn = Conn {
                                    caller,
                                    app,
                                    served,
                                    client,
                                };
                                this.serve_connection(&builder, io, conn, peer).await;
                            } else {
                                this.serve_plain_opaque(io, &caller, port, peer).await;
                            }
                        }
                    }
                }
            },
        )
        .await;
    }

    async fn serve_connection<I>(
        self: Arc<Self>,
        builder: &auto::Builder<TokioExecutor>,
        io: I,
        conn: Conn,
        peer: SocketAddr,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Conn {
            caller,
            app,
            served,
            client,
        } = conn;
        let io = client.watch_heads(io);
        let connection = client.clone();
        // Resolved once per connection, as the caller is the same for all its requests:
        // the caller→callee edge, in /metrics and in the stats shipped to the control plane.
        let edge = self.metrics.edge(caller.id().unwrap_or(""), "");
        let service = service_fn(move |mut req| {
            let (this, caller, app) = (self.clone(), caller.clone(), app.clone());
            let edge = edge.clone();
            let ticket = connection.admit_request(&req, Direction::Inbound);
            // Boxed: the request's future is large, and hyper moves it into a task per
            // HTTP/2 stream; a box moves as a pointer.
            Box::pin(async move {
                let ticket = match ticket {
                    Ok(ticket) => ticket,
                    Err(refused) => return Ok(refused.response()),
                };
                let grpc = crate::error::is_grpc(req.headers());
                let mut exchange = this.tracer.begin(&mut req);
                if let Some(exchange) = &mut exchange {
                    exchange.called_by(caller.id());
                }
                let response = this.forward(req, &caller, &edge, app.as_deref()).await;
                // A gRPC caller hears of a mesh failure in gRPC's terms.
                let response = crate::error::for_caller(grpc, response);
                this.tracer.end(exchange, &response);
                ticket.answered();
                Ok::<_, Infallible>(response)
            })
        });
        let conn = builder.serve_connection(TokioIo::new(io), service);
        if let Err(error) = served.serve(conn, client.abusive()).await {
            client.ended(&*error);
            tracing::debug!(%peer, %error, "inbound connection ended with an error");
        }
    }

    async fn forward(
        &self,
        mut req: Request<Incoming>,
        caller: &Caller,
        edge: &RequestMetrics,
        app: Option<&AppClient>,
    ) -> Response<ProxyBody> {
        let grpc = crate::error::is_grpc(req.headers());
        // One comparison on the ordinary path; an extended CONNECT is a tunnel.
        if req.method() == http::Method::CONNECT
            && let Some(protocol) = req.extensions().get::<hyper::ext::Protocol>().cloned()
        {
            return self.forward_upgrade(req, protocol, caller, edge, app).await;
        }
        let start = Instant::now();
        let _inflight = self.metrics.start();
        if let Some(denied) = self.authorize(&req, caller, edge) {
            edge.record_error(denied.code, start.elapsed());
            return denied.into_response(self.metrics.service());
        }
        let policy = self.policy.load_full();
        let pass = match policy.protection.admit().await {
            Ok(pass) => pass,
            Err(refused) => {
                tracing::debug!(caller = %caller, error = %refused, "request refused");
                edge.record_error(refused.code, start.elapsed());
                return refused.into_response(self.metrics.service());
            }
        };
        // The caller's sidecar said how long it will wait; waiting longer helps no one.
        let budget = deadline::incoming_budget(req.headers());
        let arrived_as_http1 = req.version() < Version::HTTP_2;
        let headers = req.headers_mut();
        strip_hop_by_hop(headers);
        // Whatever arrived is removed: only a verified certificate says who called.
        headers.remove(CLIENT_ID_HEADER);
        if let Some(id) = caller.header() {
            headers.insert(CLIENT_ID_HEADER, id.clone());
        }
        // A peer sidecar always speaks HTTP/2 and says how its app spoke; a plaintext
        // caller spoke for itself.
        let caller_spoke_http1 = headers.remove(ORIG_PROTO_HEADER).is_some() || arrived_as_http1;
        let result = match app {
            Some(app) => match budget {
                Some(budget) => tokio::time::timeout(budget, app.send(req, caller_spoke_http1))
                    .await
                    .unwrap_or_else(|_| {
                        Err(ProxyError::new(
                            ErrorCode::Timeout,
                            format!(
                                "the app did not answer within the caller's {} ms",
                                budget.as_millis()
                            ),
                        ))
                    }),
                None => app.send(req, caller_spoke_http1).await,
            },
            None => Err(ProxyError::new(
                ErrorCode::ConnectFailed,
                "this proxy has no app (set OUTRIGGER_APP_ADDR)",
            )),
        };
        let result = match result {
            Ok(response) => self::whole::whole_if_small(response).await,
            Err(error) => Err(error),
        };
        pass.done(!matches!(&result, Ok(r) if !r.status().is_server_error()));
        match result {
            Ok(response) => {
                edge.record_status(response.status().as_u16(), start.elapsed());
                crate::body::upstream(response, grpc.then_some(&edge.grpc))
            }
            Err(error) => {
                tracing::debug!(%error, "inbound request failed");
                edge.record_error(error.code, start.elapsed());
                error.into_response(self.metrics.service())
            }
        }
    }

    /// The ServerPolicy's verdict on this request: `None` to let it through, else the
    /// 403 to answer with. A denial counts on the caller's edge; the log says who was
    /// refused and why, once per (caller, reason) per period (`denial_log.rs`); the caller
    /// only learns that it was.
    fn authorize(
        &self,
        req: &Request<Incoming>,
        caller: &Caller,
        edge: &RequestMetrics,
    ) -> Option<ProxyError> {
        let policy = self.policy.load();
        let (method, path) = (req.method(), req.uri().path());
        if policy.allows(caller.id(), method, path) {
            return None;
        }
        edge.denials.record(Denied::Http);
        let reason = policy.explain_denial(caller.id(), method, path);
        if let Some(suppressed) = self.denial_log.admit(caller.id(), &reason) {
            tracing::warn!(
                caller = %caller,
                %method,
                path,
                %reason,
                // Denials of this caller for this reason left out of the log since its
                // last line (counted in outrigger_authorization_denied_total).
                suppressed,
                "request denied by the server policy"
            );
        }
        Some(ProxyError::new(
            ErrorCode::Unauthorized,
            format!("{caller} may not {method} {path}"),
        ))
    }
}
