//! The two listening sockets: binding them, and accepting on both until shutdown, each
//! connection admitted by its port's cap (`conn_cap.rs`) and served in its own task
//! under the graceful-shutdown watch.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::warn;

use super::conn_cap::ConnectionCap;
use super::{ServeError, Shared, conn};

/// Open connections to the plain-HTTP port (health, metrics, dashboard): a few scrapers
/// and browsers, never thousands, and a flood of the API port never takes their room.
const MAX_HTTP_CONNECTIONS: usize = 1_024;

pub(super) async fn bind(
    addr: SocketAddr,
    what: &'static str,
) -> Result<(TcpListener, SocketAddr), ServeError> {
    let error = |source| ServeError::Bind { addr, what, source };
    let listener = TcpListener::bind(addr).await.map_err(error)?;
    let local = listener.local_addr().map_err(error)?;
    Ok((listener, local))
}

/// Accepts on the API and plain-HTTP ports until `shutdown` completes; returns the
/// connections still being served.
pub(super) async fn until(
    shared: &Arc<Shared>,
    (api, http): (&TcpListener, &TcpListener),
    tls: &watch::Sender<TlsAcceptor>,
    graceful: &GracefulShutdown,
    shutdown: impl Future<Output = ()>,
) -> JoinSet<()> {
    let mut conns = JoinSet::new();
    let http_connections = ConnectionCap::new("HTTP", MAX_HTTP_CONNECTIONS, None);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return conns,
            accepted = api.accept() => match accepted {
                // Past the cap the socket is dropped: closed before any TLS work.
                Ok((tcp, peer)) => if let Some(place) = shared.api_connections.admit() {
                    let tls = tls.borrow().clone();
                    let serving = conn::serve_api(shared.clone(), tls, tcp, peer, graceful.watcher());
                    conns.spawn(async move {
                        serving.await;
                        drop(place);
                    });
                },
                Err(e) => failed("API", e).await,
            },
            accepted = http.accept() => match accepted {
                Ok((tcp, peer)) => if let Some(place) = http_connections.admit() {
                    let serving = conn::serve_http(shared.clone(), tcp, peer, graceful.watcher());
                    conns.spawn(async move {
                        serving.await;
                        drop(place);
                    });
                },
                Err(e) => failed("HTTP", e).await,
            },
            // Reap finished connections so the set does not grow.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Accept fails when the process runs out of file descriptors; pause instead of spinning.
async fn failed(what: &str, e: std::io::Error) {
    warn!("{what} accept failed: {e}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
