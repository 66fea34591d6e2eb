//! Opaque TCP: the header two sidecars exchange before an opaque connection's bytes
//! (docs/opaque-tcp.md), and the relay that copies bytes both ways, honouring
//! half-close, closing an idle connection, and counting what it carried.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

use crate::metrics::ServiceMetrics;

/// The ALPN protocol of an opaque TCP connection between sidecars.
pub(crate) const ALPN: &[u8] = b"outrigger-tcp/1";

/// The version byte of the header below.
const VERSION: u8 = 1;

/// How long the accepting side waits for the header once TLS is up.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes the header: version 1, then the port of the callee's pod the caller meant
/// (big-endian; 0 means the callee's app port).
pub(crate) async fn write_header<W: AsyncWrite + Unpin>(io: &mut W, port: u16) -> io::Result<()> {
    let [high, low] = port.to_be_bytes();
    io.write_all(&[VERSION, high, low]).await?;
    io.flush().await
}

/// Reads the header, returning the port; an unknown version is an error.
pub(crate) async fn read_header<R: AsyncRead + Unpin>(io: &mut R) -> io::Result<u16> {
    let mut header = [0u8; 3];
    io.read_exact(&mut header).await?;
    let [version, high, low] = header;
    if version != VERSION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("opaque TCP header version {version} (this proxy speaks {VERSION})"),
        ));
    }
    Ok(u16::from_be_bytes([high, low]))
}

/// Copies bytes between `client` (the side that connected) and `server` until both
/// have closed, or until neither sent a byte for `idle`. A side that closes its write
/// half has the other side's write half shut down too (half-close), and the other way
/// keeps flowing. Counts the connection in `metrics`.
pub(crate) async fn relay<C, S>(
    client: C,
    server: S,
    idle: Option<Duration>,
    metrics: &ServiceMetrics,
) where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    metrics.tcp.opened();
    let activity = Arc::new(Activity {
        last: AtomicU64::new(0),
        epoch: started,
    });
    let mut client = Counted::new(client, activity.clone());
    let mut server = Counted::new(server, activity.clone());
    let copying = tokio::io::copy_bidirectional(&mut client, &mut server);
    let result = match idle {
        Some(idle) => tokio::select! {
            result = copying => Some(result),
            () = activity.quiet_for(idle) => None,
        },
        None => Some(copying.await),
    };
    match result {
        Some(Ok(_)) => {}
        Some(Err(error)) => tracing::debug!(%error, "opaque connection ended with an error"),
        None => tracing::debug!(?idle, "closing an idle opaque connection"),
    }
    metrics
        .tcp
        .closed(client.read, server.read, started.elapsed());
}

/// When either side last sent a byte, in milliseconds since `epoch`.
struct Activity {
    last: AtomicU64,
    epoch: Instant,
}

impl Activity {
    fn touch(&self) {
        self.last
            .store(self.epoch.elapsed().as_millis() as u64, Relaxed);
    }

    /// Resolves once nothing has moved for `idle`.
    async fn quiet_for(&self, idle: Duration) {
        loop {
            let last = self.epoch + Duration::from_millis(self.last.load(Relaxed));
            let until = last + idle;
            if Instant::now() >= until {
                return;
            }
            tokio::time::sleep_until(until).await;
        }
    }
}

/// A stream that counts the bytes read from it and stamps the activity.
struct Counted<I> {
    io: I,
    read: u64,
    activity: Arc<Activity>,
}

impl<I> Counted<I> {
    fn new(io: I, activity: Arc<Activity>) -> Self {
        Counted {
            io,
            read: 0,
            activity,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Counted<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            this.read += n as u64;
            this.activity.touch();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Counted<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Direction, ProxyMetrics};

    #[tokio::test]
    async fn the_header_round_trips_and_refuses_other_versions() {
        let (mut a, mut b) = tokio::io::duplex(16);
        write_header(&mut a, 5432).await.unwrap();
        assert_eq!(read_header(&mut b).await.unwrap(), 5432);
        a.write_all(&[2, 0, 80]).await.unwrap();
        assert!(read_header(&mut b).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn half_close_lets_the_answer_through_and_bytes_are_counted() {
        let registry = ProxyMetrics::new();
        let metrics = registry.service(Direction::Outbound, "db.shop");
        let (mut app, client) = tokio::io::duplex(64);
        let (server, mut upstream) = tokio::io::duplex(64);
        let relaying = tokio::spawn(async move {
            relay(client, server, Some(Duration::from_secs(60)), &metrics).await;
            metrics
        });
        app.write_all(b"question").await.unwrap();
        app.shutdown().await.unwrap();
        let mut asked = Vec::new();
        upstream.read_to_end(&mut asked).await.unwrap();
        assert_eq!(asked, b"question", "EOF was passed on");
        upstream.write_all(b"answer!").await.unwrap();
        drop(upstream);
        let mut answer = Vec::new();
        app.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"answer!");
        // Held while rendering: a service's series live as long as its handle.
        let _metrics = relaying.await.unwrap();
        let text = registry.encode(&[]);
        assert!(text.contains("outrigger_tcp_bytes_total{direction=\"outbound\",service=\"db.shop\",way=\"sent\"} 8"), "{text}");
        assert!(text.contains("way=\"received\"} 7"), "{text}");
        assert!(
            text.contains(
                "outrigger_tcp_close_total{direction=\"outbound\",service=\"db.shop\"} 1"
            ),
            "{text}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_closed() {
        let registry = ProxyMetrics::new();
        let metrics = registry.service(Direction::Inbound, "app");
        let (mut app, client) = tokio::io::duplex(64);
        let (server, _upstream) = tokio::io::duplex(64);
        let relaying = tokio::spawn(async move {
            relay(client, server, Some(Duration::from_secs(30)), &metrics).await;
        });
        tokio::time::sleep(Duration::from_secs(20)).await;
        app.write_all(b"ping").await.unwrap();
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(!relaying.is_finished(), "activity 20 s ago: still open");
        relaying.await.unwrap();
        let mut rest = Vec::new();
        app.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "closed, with nothing more");
    }
}
