//! One multiplexed HTTP/2 connection to one address (a peer sidecar, or an app that
//! speaks HTTP/2), made on first use and remade when it closes. Requests take a clone of the ready sender without locking; only the request
//! that finds no live connection waits on the connect, and requests arriving meanwhile
//! wait for that same connect instead of starting their own.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use outrigger_certs::SpiffeId;
use rustls::ClientConfig;
use tokio::time::Instant;

use super::tls::{connect_mesh, connect_tcp};
use crate::error::{ErrorCode, ProxyError};
use crate::metrics::ProxyMetrics;

/// How a connection to the address is made.
#[derive(Clone)]
pub(crate) enum Transport {
    /// To the local app (HTTP/2 prior knowledge).
    Plain,
    /// To a peer sidecar: mTLS with the proxy's shared client config (which checks the
    /// chain and the trust domain), then the peer's identity must be `expected`.
    Mesh {
        config: Arc<ClientConfig>,
        expected: SpiffeId,
    },
}

pub(crate) struct Http2Connection<B> {
    addr: SocketAddr,
    transport: Transport,
    connect_timeout: Duration,
    metrics: Arc<ProxyMetrics>,
    current: Arc<ArcSwapOption<SendRequest<B>>>,
    connecting: tokio::sync::Mutex<()>,
    /// A connection unused this long leaves the pool (and closes once its last stream ends).
    idle_timeout: Option<Duration>,
    /// Milliseconds since `epoch` at the last request.
    last_used: Arc<AtomicU64>,
    epoch: Instant,
}

/// `B` is the request body type: the app's own bodies inbound, replayable ones outbound.
impl<B> Http2Connection<B>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pub(crate) fn new(
        addr: SocketAddr,
        transport: Transport,
        connect_timeout: Duration,
        metrics: Arc<ProxyMetrics>,
    ) -> Self {
        Http2Connection {
            addr,
            transport,
            connect_timeout,
            metrics,
            current: Arc::new(ArcSwapOption::empty()),
            connecting: tokio::sync::Mutex::new(()),
            idle_timeout: None,
            last_used: Arc::new(AtomicU64::new(0)),
            epoch: Instant::now(),
        }
    }

    /// Closes connections that carried no request for `idle` (TrafficPolicy `timeouts.idle`).
    pub(crate) fn with_idle_timeout(mut self, idle: Option<Duration>) -> Self {
        self.idle_timeout = idle;
        self
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A sender on a live connection, connecting if there is none.
    pub(crate) async fn sender(&self) -> Result<SendRequest<B>, ProxyError> {
        self.last_used
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        if let Some(live) = self.live() {
            return Ok(live);
        }
        // Connecting (TCP, TLS and HTTP/2 handshakes) makes a future of several KiB; boxed,
        // so that every request's future, which holds this one, stays small when it finds
        // a live connection, as nearly all do. A future is moved whole, whatever its state.
        Box::pin(self.connect_and_store()).await
    }

    async fn connect_and_store(&self) -> Result<SendRequest<B>, ProxyError> {
        let _connecting = self.connecting.lock().await;
        // Someone else may have connected while we waited.
        if let Some(live) = self.live() {
            return Ok(live);
        }
        let sender = self.connect().await?;
        let stored = Arc::new(sender.clone());
        self.current.store(Some(stored.clone()));
        if let Some(idle) = self.idle_timeout {
            tokio::spawn(evict_when_idle(
                Arc::downgrade(&stored),
                self.current.clone(),
                self.last_used.clone(),
                self.epoch,
                idle,
            ));
        }
        Ok(sender)
    }

    fn live(&self) -> Option<SendRequest<B>> {
        let guard = self.current.load();
        let sender = guard.as_ref()?;
        (!sender.is_closed()).then(|| SendRequest::clone(sender))
    }

    async fn connect(&self) -> Result<SendRequest<B>, ProxyError> {
        let addr = self.addr;
        match &self.transport {
            Transport::Plain => {
                let tcp = connect_tcp(addr, self.connect_timeout).await?;
                handshake(TokioIo::new(tcp), addr).await
            }
            Transport::Mesh { config, expected } => {
                let tls = connect_mesh(addr, config, expected, self.connect_timeout, &self.metrics)
                    .await?;
                handshake(TokioIo::new(tls), addr).await
            }
        }
    }
}

/// Drops the pool's handle on a connection once it has been idle for `idle`; hyper then
/// closes it when its in-flight streams are done. Ends early if the connection is replaced.
async fn evict_when_idle<B>(
    connection: Weak<SendRequest<B>>,
    current: Arc<ArcSwapOption<SendRequest<B>>>,
    last_used: Arc<AtomicU64>,
    epoch: Instant,
    idle: Duration,
) {
    loop {
        let used = Duration::from_millis(last_used.load(Ordering::Relaxed));
        let quiet = epoch.elapsed().saturating_sub(used);
        if quiet < idle {
            tokio::time::sleep(idle - quiet).await;
            continue;
        }
        let Some(ours) = connection.upgrade() else {
            return;
        };
        let swapped = current.compare_and_swap(&Some(ours.clone()), None::<Arc<SendRequest<B>>>);
        if swapped.as_ref().is_some_and(|s| Arc::ptr_eq(s, &ours)) {
            tracing::debug!("closing an idle connection");
        }
        return;
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Empty;

    /// An HTTP/2 server on loopback that answers every request with 200.
    async fn h2_server() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            Empty::<bytes::Bytes>::new(),
                        ))
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn reuses_one_connection_and_lets_an_idle_one_go() {
        let addr = h2_server().await;
        let endpoint: Http2Connection<Empty<bytes::Bytes>> = Http2Connection::new(
            addr,
            Transport::Plain,
            Duration::from_secs(1),
            ProxyMetrics::new(),
        )
        .with_idle_timeout(Some(Duration::from_millis(50)));
        let mut first = endpoint.sender().await.unwrap();
        first
            .send_request(http::Request::new(Empty::new()))
            .await
            .unwrap();
        let second = endpoint.sender().await.unwrap();
        assert!(endpoint.current.load().is_some());
        drop((first, second));
        // Bounded wait for the eviction; no assertion on how long it took.
        for _ in 0..200 {
            if endpoint.current.load().is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(
            endpoint.current.load().is_none(),
            "the idle connection left the pool"
        );
        // The next request simply connects again.
        let mut again = endpoint.sender().await.unwrap();
        again
            .send_request(http::Request::new(Empty::new()))
            .await
            .unwrap();
    }
}
