//! Protocol detection: what a connection speaks, from its first bytes. The bytes read to
//! decide are kept and handed on in front of the stream ([`Prefixed`]), so whoever
//! serves the connection (hyper, or the opaque TCP forwarder) sees it from its start.
//!
//! Detection waits for the client to speak. A server-first protocol (SMTP, MySQL) never
//! does, so a timeout decides "opaque" too; callers skip detection altogether where they
//! know better (a `protocol: tcp` service, an opaque port).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The client connection preface of HTTP/2 (RFC 9113, section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Request methods that open an HTTP/1 request line; each is followed by a space.
const HTTP1_METHODS: [&[u8]; 9] = [
    b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE",
];

/// Enough for any decision above (the preface is the longest, 24 bytes); a first read
/// is usually the whole first packet, and is kept whole.
const READ_SIZE: usize = 1024;

/// What a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detected {
    Http1,
    Http2,
    /// Neither: bytes that open no HTTP request, or a close before a decision.
    Opaque,
    /// The client said too little before the timeout: treated as opaque.
    TimedOut,
}

impl Detected {
    pub(crate) fn is_http(self) -> bool {
        matches!(self, Detected::Http1 | Detected::Http2)
    }
}

/// Reads from `io` until its first bytes decide the protocol, the peer closes, or
/// `timeout` passes. Returns the decision and every byte read.
pub(crate) async fn detect<I>(io: &mut I, timeout: Duration) -> io::Result<(Detected, Bytes)>
where
    I: AsyncRead + Unpin,
{
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    let reading = async {
        loop {
            if let Some(decided) = classify(&buf) {
                return Ok::<_, io::Error>(decided);
            }
            if buf.len() >= READ_SIZE {
                return Ok(Detected::Opaque);
            }
            if io.read_buf(&mut buf).await? == 0 {
                // Closed (or half-closed) before a decision: pass on what there is.
                return Ok(Detected::Opaque);
            }
        }
    };
    let decided = match tokio::time::timeout(timeout, reading).await {
        Ok(result) => result?,
        Err(_) => Detected::TimedOut,
    };
    Ok((decided, buf.freeze()))
}

/// The decision for the bytes read so far; `None` while they could still become either.
fn classify(buf: &[u8]) -> Option<Detected> {
    if buf.is_empty() {
        return None;
    }
    if buf.starts_with(H2_PREFACE) {
        return Some(Detected::Http2);
    }
    let mut undecided = H2_PREFACE.starts_with(buf);
    for method in HTTP1_METHODS {
        let line_start = buf.get(..method.len() + 1);
        if line_start.is_some_and(|s| s.starts_with(method) && s.ends_with(b" ")) {
            return Some(Detected::Http1);
        }
        // "PO" could still be "POST ".
        undecided |= buf.len() <= method.len() && method.starts_with(buf);
    }
    if undecided {
        None
    } else {
        Some(Detected::Opaque)
    }
}

/// A stream with bytes already read from it put back in front.
pub struct Prefixed<I> {
    prefix: Bytes,
    io: I,
}

impl<I> Prefixed<I> {
    pub fn new(prefix: Bytes, io: I) -> Self {
        Prefixed { prefix, io }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.has_remaining() {
            let n = this.prefix.len().min(out.remaining());
            out.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, out)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
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

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn first_bytes_decide() {
        assert_eq!(classify(b""), None);
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Detected::Http1));
        assert_eq!(classify(b"OPTIONS "), Some(Detected::Http1));
        assert_eq!(classify(b"PO"), None, "could be POST");
        assert_eq!(classify(b"PRI * HTTP/2"), None, "a prefix of the preface");
        assert_eq!(classify(H2_PREFACE), Some(Detected::Http2));
        assert_eq!(classify(b"GETS"), Some(Detected::Opaque));
        assert_eq!(classify(b"get / HTTP/1.1"), Some(Detected::Opaque));
        assert_eq!(classify(b"\x16\x03\x01"), Some(Detected::Opaque), "TLS");
        assert_eq!(
            classify(b"*3\r\n$3\r\nSET"),
            Some(Detected::Opaque),
            "Redis"
        );
        assert_eq!(classify(b"PRI * HTTP/1.1"), Some(Detected::Opaque));
    }

    #[tokio::test(start_paused = true)]
    async fn a_preface_split_across_packets_is_http2_and_kept_whole() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let sending = tokio::spawn(async move {
            for part in [&H2_PREFACE[..3], &H2_PREFACE[3..17], &H2_PREFACE[17..]] {
                client.write_all(part).await.unwrap();
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            client.write_all(b"frames").await.unwrap();
            client
        });
        let (detected, read) = detect(&mut server, SECOND).await.unwrap();
        assert_eq!(detected, Detected::Http2);
        assert_eq!(&read[..], H2_PREFACE);
        // The bytes read come first, then the rest of the stream.
        let _client = sending.await.unwrap();
        let mut prefixed = Prefixed::new(read, server);
        let mut all = vec![0u8; H2_PREFACE.len() + 6];
        prefixed.read_exact(&mut all).await.unwrap();
        assert_eq!(&all[H2_PREFACE.len()..], b"frames");
    }

    #[tokio::test(start_paused = true)]
    async fn a_method_in_pieces_is_http1() {
        let (mut client, mut server) = tokio::io::duplex(64);
        tokio::spawn(async move {
            for part in [&b"P"[..], b"AT", b"CH /x HTTP/1.1\r\n"] {
                client.write_all(part).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            client
        });
        let (detected, read) = detect(&mut server, SECOND).await.unwrap();
        assert_eq!(detected, Detected::Http1);
        assert_eq!(&read[..], b"PATCH /x HTTP/1.1\r\n");
    }

    #[tokio::test(start_paused = true)]
    async fn other_bytes_are_opaque_at_once() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"\x00\x01hello").await.unwrap();
        let (detected, read) = detect(&mut server, SECOND).await.unwrap();
        assert_eq!(detected, Detected::Opaque);
        assert_eq!(&read[..], b"\x00\x01hello");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_times_out_with_what_it_sent() {
        let (mut client, mut server) = tokio::io::duplex(64);
        // A prefix of a method, then nothing: not a decision, so the timeout decides.
        client.write_all(b"GE").await.unwrap();
        let started = tokio::time::Instant::now();
        let (detected, read) = detect(&mut server, SECOND).await.unwrap();
        assert_eq!(detected, Detected::TimedOut);
        assert!(!detected.is_http());
        assert_eq!(&read[..], b"GE");
        assert_eq!(
            started.elapsed(),
            SECOND,
            "paused time: exactly the timeout"
        );
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn a_close_before_a_decision_is_opaque() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"PU").await.unwrap();
        drop(client);
        let (detected, read) = detect(&mut server, SECOND).await.unwrap();
        assert_eq!((detected, &read[..]), (Detected::Opaque, &b"PU"[..]));
    }
}
