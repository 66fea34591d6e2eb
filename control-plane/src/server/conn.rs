//! Serving one accepted connection: the TLS handshake (API port) or none (HTTP port),
//! then HTTP/1.1 under the server's graceful-shutdown watch.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::Watcher;
use outrigger_certs::{describe_tls_error, issued_at_unix, peer_identity};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use super::{ConnInfo, Shared, admin, api};

/// A client that connects gets this long to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// And this long to send a request's headers (also closes idle keep-alive connections).
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

fn http1_builder() -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    builder
}

/// The HTTPS API: mTLS optional (a first-time sidecar only holds a token).
pub(crate) async fn serve_api(
    shared: Arc<Shared>,
    tls: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    graceful: Watcher,
) {
    let _ = tcp.set_nodelay(true);
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            match e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                Some(tls_error) => {
                    warn!(%peer, "TLS handshake refused: {}", describe_tls_error(tls_error));
                }
                None => debug!(%peer, "TLS handshake failed: {e}"),
            }
            return;
        }
        Err(_) => {
            debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    // The verifier has checked the chain and the trust domain; this is who the client is.
    let client_certs = stream.get_ref().1.peer_certificates();
    let identity = peer_identity(client_certs);
    // Unreadable cannot happen for a verified certificate; if it did, the certificate
    // counts as issued at the start of time, so that any revocation of its identity holds.
    let issued_at = client_certs
        .and_then(|certs| certs.first())
        .and_then(|leaf| issued_at_unix(leaf).ok())
        .unwrap_or(i64::MIN);
    let cut = Arc::new(Notify::new());
    let conn = Arc::new(ConnInfo {
        peer,
        identity,
        issued_at,
        cut: cut.clone(),
    });
    let service = service_fn(move |req| {
        let shared = shared.clone();
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(api::route(&shared, &conn, req).await) }
    });
    let serving = http1_builder().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        served = graceful.watch(serving) => if let Err(e) = served {
            debug!(%peer, "API connection ended: {e}");
        },
        // A watch stream cut by the control plane: dropping the connection closes it,
        // whatever is still in its buffers.
        () = cut.notified() => debug!(%peer, "API connection cut"),
    }
}

/// The plain-HTTP port: health and metrics.
pub(crate) async fn serve_http(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    graceful: Watcher,
) {
    let service = service_fn(move |req| {
        let response = admin::route(&shared, &req);
        async move { Ok::<_, Infallible>(response) }
    });
    let serving = http1_builder().serve_connection(TokioIo::new(tcp), service);
    if let Err(e) = graceful.watch(serving).await {
        debug!(%peer, "HTTP connection ended: {e}");
    }
}
