//! Connections to other processes, used by both sides: pooled, multiplexed HTTP/2 to
//! peer sidecars over mTLS (outbound) and to an HTTP/2 app (inbound), keep-alive
//! HTTP/1.1 to an HTTP/1 app (inbound), and the one mTLS client config they share.

mod http1;
mod http2;
mod tls;

use std::sync::Arc;

use outrigger_certs::{ServerIdVerifier, client_config};
use rustls::ClientConfig;

use crate::identity::Identity;

pub(crate) use http1::Http1Pool;
pub(crate) use http2::{Http2Connection, Transport};
pub(crate) use tls::{connect_mesh, connect_tcp};

/// The mTLS client config for every peer sidecar: it presents our certificate, verifies
/// the peer's chain against the (swappable) trust bundle and its trust domain. Which
/// identity a connection must reach is checked per connection ([`Transport::Mesh`]), so
/// one config, with one session cache, serves every service of the mesh.
pub(crate) fn mesh_client_config(identity: &Identity) -> Result<Arc<ClientConfig>, crate::Error> {
    let verifier =
        ServerIdVerifier::in_trust_domain(identity.bundle.clone(), &identity.trust_domain);
    Ok(client_config(
        Some(identity.certs.clone()),
        verifier,
        &[b"h2"],
    )?)
}

/// The mTLS client config for opaque TCP to peer sidecars: as
/// [`mesh_client_config`], but offering ALPN `outrigger-tcp/1` (docs/opaque-tcp.md).
pub(crate) fn mesh_tcp_client_config(
    identity: &Identity,
) -> Result<Arc<ClientConfig>, crate::Error> {
    let verifier =
        ServerIdVerifier::in_trust_domain(identity.bundle.clone(), &identity.trust_domain);
    Ok(client_config(
        Some(identity.certs.clone()),
        verifier,
        &[crate::opaque::ALPN],
    )?)
}
