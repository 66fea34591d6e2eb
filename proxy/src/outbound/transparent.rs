//! Connections that iptables redirected to the outbound port: routed by their original
//! destination. A service address, else an endpoint address, names a mesh service; then
//! a `protocol: tcp` service or an opaque port goes opaque at once (a server-first
//! protocol must not wait on detection), and anything else is detected: HTTP enters the
//! HTTP stack routed to that service, the rest is opaque TCP over mTLS
//! (docs/opaque-tcp.md). A destination outside the mesh is passed through as plain TCP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::uri::Authority;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use outrigger_api::Protocol;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::dial::dial;
use super::endpoint::Endpoint;
use super::{Outbound, Target};
use crate::detect::{Detected, Prefixed, detect};
use crate::error::ProxyError;
use crate::hardening::ClientConnection;
use crate::mesh::{Destination, ServiceEntry};
use crate::opaque;
use crate::serve::Served;
use crate::transport::{connect_mesh, connect_tcp};

/// How the outbound side treats redirected connections.
pub(crate) struct Interception {
    /// Ports that are opaque without detection.
    pub opaque_ports: Box<[u16]>,
    pub detect_timeout: Duration,
    /// The mTLS client config offering ALPN `outrigger-tcp/1`.
    pub tcp_tls: Arc<ClientConfig>,
    pub connect_timeout: Duration,
}

impl Interception {
    /// An authority for a request that brought none (HTTP/1.0 without Host): the
    /// service's name.
    pub(super) fn authority_of(&self, entry: &ServiceEntry) -> Option<Authority> {
        Authority::try_from(entry.key()).ok()
    }
}

impl Outbound {
    /// Serves a connection that was on its way to `destination`.
    pub(super) async fn transparent(
        self: Arc<Self>,
        mut stream: TcpStream,
        destination: SocketAddr,
        builder: &auto::Builder<TokioExecutor>,
        served: Served,
        client: Arc<ClientConnection>,
    ) {
        let found = self.mesh.table().lookup_addr(destination).cloned();
        let Some(found) = found else {
            return self.egress(stream, destination).await;
        };
        let entry = found.entry();
        let opaque_now = entry.protocol == Protocol::Tcp
            || self.interception.opaque_ports.contains(&destination.port());
        if opaque_now {
            return self.opaque(stream, &found).await;
        }
        let detected = detect(&mut stream, self.interception.detect_timeout).await;
        let (detected, read) = match detected {
            Ok(detected) => detected,
            Err(error) => {
                tracing::debug!(%destination, %error, "connection failed during detection");
                return;
            }
        };
        if detected == Detected::TimedOut {
            self.registry.detect_timeouts.inc();
        }
        tracing::debug!(%destination, service = entry.key(), ?detected, "redirected connection");
        let io = Prefixed::new(read, stream);
        if detected.is_http() {
            let entry = entry.clone();
            self.serve_http(builder, io, Some(entry), served, client)
                .await;
        } else {
            self.opaque(io, &found).await;
        }
    }

    /// Opaque TCP to an instance of the destination's service, over mTLS.
    async fn opaque<I>(&self, client: I, destination: &Destination)
    where
        I: AsyncRead + AsyncWrite + Unpin,
    {
        let start = Instant::now();
        let target = self.targets.get(destination.entry(), start);
        match self.connect_opaque(&target, destination, start).await {
            Ok(server) => {
                let idle = target.resolved.idle_timeout;
                opaque::relay(client, server, idle, &target.metrics).await;
            }
            Err(error) => {
                // No way to say why on a byte stream: the client sees the connection close.
                tracing::info!(service = target.name(), %error, "opaque connection refused");
                target.metrics.tcp.opened();
                target.metrics.tcp.closed(0, 0, start.elapsed());
            }
        }
    }

    async fn connect_opaque(
        &self,
        target: &Target,
        destination: &Destination,
        now: Instant,
    ) -> Result<impl AsyncRead + AsyncWrite + Unpin + use<>, ProxyError> {
        // A pod's own address means that pod (a database replica is not interchangeable);
        // a service address means any instance, and the breaker hears how it went.
        match destination {
            Destination::Endpoint(_, addr) => self.connect_instance(target, *addr).await,
            Destination::Service(_) => {
                let connect =
                    |endpoint: &Arc<Endpoint>| self.connect_instance(target, endpoint.addr());
                dial(target, now, connect, |_| true).await
            }
        }
    }

    /// mTLS to one instance, its identity checked, then the opaque header.
    async fn connect_instance(
        &self,
        target: &Target,
        addr: SocketAddr,
    ) -> Result<impl AsyncRead + AsyncWrite + Unpin + use<>, ProxyError> {
        let mut tls = connect_mesh(
            addr,
            &self.interception.tcp_tls,
            &target.entry.identity,
            target.resolved.connect_timeout,
            &self.registry,
        )
        .await?;
        // The instance's port is the one its pod serves; the callee maps it to its app.
        opaque::write_header(&mut tls, addr.port())
            .await
            .map_err(|e| {
                ProxyError::new(crate::ErrorCode::UpstreamReset, format!("{addr}: {e}"))
            })?;
        Ok(tls)
    }

    /// Not in the mesh: passed through to where it was going, as plain TCP.
    async fn egress(&self, client: TcpStream, destination: SocketAddr) {
        self.registry.egress_connections.inc();
        tracing::debug!(%destination, "not in the mesh: passing through");
        match connect_tcp(destination, self.interception.connect_timeout).await {
            Ok(server) => opaque::relay(client, server, None, &self.egress).await,
            Err(error) => tracing::debug!(%destination, %error, "egress connect failed"),
        }
    }
}
