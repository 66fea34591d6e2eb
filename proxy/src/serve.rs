//! Accept loops with graceful drain, shared by the inbound, outbound and admin listeners.
//! On shutdown a listener stops accepting at once; its connections finish the requests
//! they have in flight and then close.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulConnection, GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Tells every listener to stop accepting; cloned into each accept loop.
#[derive(Clone)]
pub(crate) struct Drain(watch::Receiver<bool>);

/// The sending half of [`Drain`].
pub(crate) struct DrainSignal(watch::Sender<bool>);

pub(crate) fn drain() -> (DrainSignal, Drain) {
    let (tx, rx) = watch::channel(false);
    (DrainSignal(tx), Drain(rx))
}

impl DrainSignal {
    pub(crate) fn start(&self) {
        let _ = self.0.send(true);
    }
}

impl Drain {
    /// Resolves once draining has started.
    pub(crate) async fn signaled(&mut self) {
        let _ = self.0.wait_for(|draining| *draining).await;
    }
}

/// Binds a listener, naming the address and the role in the error.
pub(crate) async fn bind(addr: SocketAddr, role: &str) -> Result<TcpListener, crate::Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| crate::Error::Bind {
            role: role.to_string(),
            addr,
            source,
        })
}

/// The HTTP server builder: HTTP/1.1 and HTTP/2 (prior knowledge), detected per
/// connection. The app-facing listeners add their limits (`crate::hardening`).
pub(crate) fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(hyper_util::rt::TokioTimer::new());
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(Some(1024));
    builder
}

/// An accepted connection's share in its listener's drain: it serves its HTTP until the
/// listener drains, then shuts down gracefully; the listener waits for it.
pub(crate) struct Served {
    drain: Drain,
    /// Held for the connection's life: the listener's drain waits until all are dropped.
    _counted: Watcher,
}

impl Served {
    /// Serves `conn` to its end. It is shut down gracefully (HTTP/2 GOAWAY, HTTP/1 close
    /// after the request in flight) when the listener drains or when `stop` resolves.
    pub(crate) async fn serve<C>(
        mut self,
        conn: C,
        stop: impl Future<Output = ()>,
    ) -> Result<(), C::Error>
    where
        C: GracefulConnection,
    {
        let mut conn = std::pin::pin!(conn);
        // Biased, the connection first: no random draw at every wake-up.
        tokio::select! {
            biased;
            result = conn.as_mut() => return result,
            () = self.drain.signaled() => {}
            () = stop => {}
        }
        conn.as_mut().graceful_shutdown();
        conn.await
    }
}

/// Runs an accept loop until draining starts, then waits up to `grace` for the
/// connections it accepted. `on_conn` serves one connection; its [`Served`] makes the
/// connection's own shutdown graceful.
pub(crate) async fn accept_loop<F, Fut>(
    listener: TcpListener,
    mut drain: Drain,
    grace: Duration,
    role: &'static str,
    on_conn: F,
) where
    F: Fn(TcpStream, SocketAddr, Served) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let served = Served {
                        drain: drain.clone(),
                        _counted: graceful.watcher(),
                    };
                    tokio::spawn(on_conn(stream, peer, served));
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, role, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = drain.signaled() => break,
        }
    }
    drop(listener);
    tracing::debug!(role, "stopped accepting; draining connections");
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            role,
            ?grace,
            "connections still open after the grace period"
        );
    }
}
