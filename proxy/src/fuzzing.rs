//! The proxy's parsers of untrusted input, reachable from the fuzz targets in `fuzz/`
//! (docs/security.md). Not API: hidden from the docs, and free to change with the
//! targets. Each function is a thin door onto the code the proxy runs, never a copy of
//! it, so that what is fuzzed is what serves traffic.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use http::request::Parts;
use http::uri::Authority;
use outrigger_certs::TrustBundle;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::backoff::Backoff;
use crate::control::watch::WatchLines;
use crate::identity::Identity;
use crate::mesh::MeshState;
use crate::metrics::ProxyMetrics;

pub use crate::detect::{Detected, Prefixed};

/// A proxy's view of the mesh, fed the watch stream as the proxy is.
pub struct WatchedMesh {
    mesh: Arc<MeshState>,
    lines: WatchLines,
    backoff: Backoff,
}

impl WatchedMesh {
    /// A proxy that trusts `trust_anchor_pem` and has no config yet.
    pub fn new(trust_anchor_pem: &str, trust_domain: &str) -> Result<Self, String> {
        let bundle = TrustBundle::from_pem(trust_anchor_pem).map_err(|e| e.to_string())?;
        let metrics = ProxyMetrics::new();
        let identity = Identity::new(bundle, trust_domain, metrics.clone());
        Ok(WatchedMesh {
            mesh: MeshState::new(identity, metrics),
            lines: WatchLines::default(),
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
        })
    }

    /// One frame of the watch body; an error is what makes the proxy reconnect.
    pub fn push(&mut self, frame: &[u8]) -> Result<(), String> {
        self.lines.push(frame, &self.mesh, &mut self.backoff)
    }

    /// The config version applied (0: none yet).
    pub fn version(&self) -> u64 {
        self.mesh.version()
    }

    /// How many services the table holds.
    pub fn services(&self) -> usize {
        self.mesh.table().len()
    }

    /// The `name.namespace` of the service a request for `host` goes to.
    pub fn route(&self, host: &str) -> Option<String> {
        self.mesh.table().lookup(host).map(|e| e.key().to_string())
    }
}

/// The authority the outbound side routes a request by (URI, else `Host`).
pub fn outbound_authority<B>(request: &http::Request<B>) -> Option<Authority> {
    crate::outbound::authority_of(request)
}

/// Rewrites a request head for the hop to the peer sidecar, as the outbound side does.
pub fn prepare_for_peer(parts: &mut Parts, authority: Authority) -> Result<(), String> {
    crate::outbound::request::prepare(parts, authority).map_err(|e| e.to_string())
}

/// A `grpc-timeout` header value.
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    crate::resilience::deadline::parse_grpc_timeout(value)
}

/// The time budget a request arrived with (`outrigger-deadline-ms`, `grpc-timeout`).
pub fn incoming_budget(headers: &HeaderMap) -> Option<Duration> {
    crate::resilience::deadline::incoming_budget(headers)
}

/// Writes the budget left for the next hop.
pub fn set_budget(headers: &mut HeaderMap, remaining: Duration) {
    crate::resilience::deadline::set_budget(headers, remaining)
}

/// Reads the opaque TCP header a peer sidecar sends first; returns the port it names.
pub async fn read_opaque_header<R: AsyncRead + Unpin>(io: &mut R) -> io::Result<u16> {
    crate::opaque::read_header(io).await
}

/// Writes the opaque TCP header for `port`.
pub async fn write_opaque_header<W: AsyncWrite + Unpin>(io: &mut W, port: u16) -> io::Result<()> {
    crate::opaque::write_header(io, port).await
}

/// What a redirected connection speaks, from its first bytes, and the bytes read.
pub async fn detect<I: AsyncRead + Unpin>(
    io: &mut I,
    timeout: Duration,
) -> io::Result<(Detected, bytes::Bytes)> {
    crate::detect::detect(io, timeout).await
}
