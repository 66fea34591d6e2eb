//! Accepting one inbound connection, and who the caller is. Always mTLS; when the
//! ServerPolicy is permissive, plaintext HTTP too, told apart by the first byte (every
//! TLS connection starts with a handshake record, 0x16; no HTTP request does). The mode is
//! read per connection, so a policy change applies to the next connection and never cuts
//! an open one.

use std::net::SocketAddr;
use std::time::Duration;

use http::HeaderValue;
use outrigger_certs::{SpiffeId, peer_identity};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::metrics::ProxyMetrics;

/// A peer that has not finished its handshake (or sent its first byte) by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The first byte of a TLS record carrying a handshake.
const TLS_HANDSHAKE: u8 = 0x16;

pub(super) enum Accepted {
    Tls(Box<TlsStream<TcpStream>>),
    /// Permissive mode only.
    Plain(TcpStream),
}

/// Who is calling on a connection, worked out once per connection.
pub(super) struct Caller {
    /// The verified SPIFFE id; `None` for a plaintext (unauthenticated) caller.
    id: Option<SpiffeId>,
    /// `id` as the `outrigger-client-id` value.
    header: Option<HeaderValue>,
}

impl Caller {
    pub(super) fn id(&self) -> Option<&str> {
        self.id.as_ref().map(SpiffeId::as_str)
    }

    pub(super) fn header(&self) -> Option<&HeaderValue> {
        self.header.as_ref()
    }
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.id {
            Some(id) => write!(f, "{id}"),
            None => f.write_str("unauthenticated (plaintext) caller"),
        }
    }
}

/// The connection and its caller, or `None` if it was refused (logged here).
pub(super) async fn accept(
    acceptor: &TlsAcceptor,
    registry: &ProxyMetrics,
    stream: TcpStream,
    peer: SocketAddr,
    permissive: bool,
) -> Option<(Accepted, Caller)> {
    if permissive && !starts_with_tls(&stream, peer).await? {
        tracing::debug!(%peer, "plaintext inbound connection (permissive mode)");
        let caller = Caller {
            id: None,
            header: None,
        };
        return Some((Accepted::Plain(stream), caller));
    }
    let result = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
    let tls = match result {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            registry.tls_handshakes_failed.inc();
            tracing::warn!(%peer, reason = %crate::tls_io_error(&error), "refused inbound connection");
            return None;
        }
        Err(_) => {
            registry.tls_handshakes_failed.inc();
            tracing::warn!(%peer, "refused inbound connection: handshake timed out");
            return None;
        }
    };
    registry.tls_handshakes_ok.inc();
    // The verifier has required a certificate with a SPIFFE id of our trust domain.
    let id = peer_identity(tls.get_ref().1.peer_certificates())?;
    let header = HeaderValue::from_str(id.as_str()).ok()?;
    tracing::debug!(%peer, client = %id, "inbound connection");
    let caller = Caller {
        id: Some(id),
        header: Some(header),
    };
    Some((Accepted::Tls(Box::new(tls)), caller))
}

/// Whether the connection's first byte opens a TLS handshake; `None` if the peer closed
/// or sent nothing in time.
async fn starts_with_tls(stream: &TcpStream, peer: SocketAddr) -> Option<bool> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(1)) => Some(first[0] == TLS_HANDSHAKE),
        Ok(Ok(_)) => None,
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "inbound connection failed before its first byte");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "inbound connection sent nothing in time");
            None
        }
    }
}
