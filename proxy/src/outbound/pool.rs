//! One multiplexed HTTP/2 connection per endpoint, made on first use and remade when it
//! closes. Requests take a clone of the ready sender without locking; only the request
//! that finds no live connection waits on the connect, and requests arriving meanwhile
//! wait for that same connect instead of starting their own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::error::{ErrorCode, ProxyError};
use crate::metrics::Registry;

/// How a connection to the endpoint is made.
#[derive(Clone)]
pub enum Transport {
    /// To the local app (HTTP/2 prior knowledge).
    Plain,
    /// To a peer sidecar: mTLS, with the peer's identity checked by the config's verifier.
    Tls(Arc<ClientConfig>),
}

pub struct Http2Endpoint<B> {
    addr: SocketAddr,
    transport: Transport,
    connect_timeout: Duration,
    metrics: Arc<Registry>,
    current: ArcSwapOption<SendRequest<B>>,
    connecting: tokio::sync::Mutex<()>,
}

/// `B` is the request body type: the app's own bodies inbound, replayable ones outbound.
impl<B> Http2Endpoint<B>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pub fn new(
        addr: SocketAddr,
        transport: Transport,
        connect_timeout: Duration,
        metrics: Arc<Registry>,
    ) -> Self {
        Http2Endpoint {
            addr,
            transport,
            connect_timeout,
            metrics,
            current: ArcSwapOption::empty(),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A sender on a live connection, connecting if there is none.
    pub async fn sender(&self) -> Result<SendRequest<B>, ProxyError> {
        if let Some(live) = self.live() {
            return Ok(live);
        }
        let _connecting = self.connecting.lock().await;
        // Someone else may have connected while we waited.
        if let Some(live) = self.live() {
            return Ok(live);
        }
        let sender = self.connect().await?;
        self.current.store(Some(Arc::new(sender.clone())));
        Ok(sender)
    }

    fn live(&self) -> Option<SendRequest<B>> {
        let guard = self.current.load();
        let sender = guard.as_ref()?;
        (!sender.is_closed()).then(|| SendRequest::clone(sender))
    }

    async fn connect(&self) -> Result<SendRequest<B>, ProxyError> {
        let addr = self.addr;
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                ProxyError::new(
                    ErrorCode::ConnectFailed,
                    format!(
                        "connect to {addr} timed out after {:?}",
                        self.connect_timeout
                    ),
                )
            })?
            .map_err(|e| {
                ProxyError::new(ErrorCode::ConnectFailed, format!("connect to {addr}: {e}"))
            })?;
        let _ = tcp.set_nodelay(true);
        match &self.transport {
            Transport::Plain => handshake(TokioIo::new(tcp), addr).await,
            Transport::Tls(config) => {
                let connecting = TlsConnector::from(config.clone())
                    .connect(ServerName::IpAddress(addr.ip().into()), tcp);
                let tls = tokio::time::timeout(self.connect_timeout, connecting)
                    .await
                    .map_err(|_| {
                        ProxyError::new(
                            ErrorCode::TlsFailed,
                            format!("TLS handshake with {addr} timed out"),
                        )
                    })
                    .and_then(|r| {
                        r.map_err(|e| {
                            ProxyError::new(
                                ErrorCode::TlsFailed,
                                format!("TLS with {addr}: {}", crate::tls_io_error(&e)),
                            )
                        })
                    });
                match tls {
                    Ok(tls) => {
                        self.metrics.tls_handshakes_ok.fetch_add(1, Relaxed);
                        handshake(TokioIo::new(tls), addr).await
                    }
                    Err(error) => {
                        self.metrics.tls_handshakes_failed.fetch_add(1, Relaxed);
                        tracing::warn!(%addr, error = %error.message, "refusing peer");
                        Err(error)
                    }
                }
            }
        }
    }
}

async fn handshake<T, B>(io: TokioIo<T>, addr: SocketAddr) -> Result<SendRequest<B>, ProxyError>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .handshake(io)
        .await
        .map_err(|e| {
            ProxyError::new(ErrorCode::ConnectFailed, format!("HTTP/2 with {addr}: {e}"))
        })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%addr, %error, "HTTP/2 connection ended");
        }
    });
    Ok(sender)
}
