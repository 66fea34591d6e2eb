//! Connecting to a peer sidecar over mTLS, shared by the pooled HTTP/2 connections and
//! opaque TCP: TCP connect and handshake, each within the connect timeout, then the
//! peer's SPIFFE id checked against the destination's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use outrigger_certs::{SpiffeId, check_peer_id};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::error::{ErrorCode, ProxyError};
use crate::metrics::ProxyMetrics;

/// A TCP connection to `addr`, within `timeout`.
pub(crate) async fn connect_tcp(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<TcpStream, ProxyError> {
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| {
            ProxyError::new(
                ErrorCode::ConnectFailed,
                format!("connect to {addr} timed out after {timeout:?}"),
            )
        })?
        .map_err(|e| {
            ProxyError::new(ErrorCode::ConnectFailed, format!("connect to {addr}: {e}"))
        })?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// An mTLS connection to the sidecar at `addr`, whose identity must be `expected`.
pub(crate) async fn connect_mesh(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    expected: &SpiffeId,
    timeout: Duration,
    metrics: &ProxyMetrics,
) -> Result<TlsStream<TcpStream>, ProxyError> {
    let tcp = connect_tcp(addr, timeout).await?;
    let connecting =
        TlsConnector::from(config.clone()).connect(ServerName::IpAddress(addr.ip().into()), tcp);
    let tls = tokio::time::timeout(timeout, connecting)
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
        })
        .and_then(|tls| {
            // The chain was verified in the handshake; the identity is checked here, as
            // the client config is shared by all services.
            match check_peer_id(tls.get_ref().1.peer_certificates(), expected) {
                Ok(()) => Ok(tls),
                Err(refused) => Err(ProxyError::new(
                    ErrorCode::TlsFailed,
                    format!("TLS with {addr}: {refused}"),
                )),
            }
        });
    match tls {
        Ok(tls) => {
            metrics.tls_handshakes_ok.inc();
            Ok(tls)
        }
        Err(error) => {
            metrics.tls_handshakes_failed.inc();
            tracing::warn!(%addr, error = %error.message, "refusing peer");
            Err(error)
        }
    }
}
