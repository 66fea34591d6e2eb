//! The Outrigger sidecar. Outbound, it takes the app's plain HTTP and calls other
//! services over mutual TLS; inbound, it accepts mTLS from other sidecars and hands the
//! request to the app with the caller's verified identity. Its certificate and its
//! configuration come from the control plane.

mod admin;
mod backoff;
mod balance;
mod body;
mod circuits_view;
pub mod config;
mod control;
mod detect;
mod error;
// The fuzz targets' entry points (fuzz/): not API.
#[doc(hidden)]
pub mod fuzzing;
mod grpc_status;
mod hardening;
mod health;
mod identity;
mod inbound;
pub mod init;
mod mesh;
mod metrics;
mod opaque;
mod original_dst;
mod outbound;
mod proxy;
mod request_match;
mod resilience;
mod serve;
mod trace;
mod transport;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use config::Config;
pub use error::{ERROR_HEADER, ErrorCode};
pub use proxy::Proxy;

/// The caller's verified SPIFFE id, set by the inbound side for the app.
pub const CLIENT_ID_HEADER: &str = "outrigger-client-id";
/// Carries "the calling app spoke HTTP/1.1" across the HTTP/2 hop between sidecars.
pub const ORIG_PROTO_HEADER: &str = "outrigger-orig-proto";

/// Why the proxy cannot start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr} for {role}: {source}")]
    Bind {
        role: String,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {what} from {path}: {reason}")]
    File {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{0}")]
    Config(String),
    #[error("TLS setup: {0}")]
    Tls(#[from] outrigger_certs::Error),
}

/// The reason inside an I/O error from a TLS handshake, in words.
pub(crate) fn tls_io_error(error: &std::io::Error) -> String {
    match error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(tls) => outrigger_certs::describe_tls_error(tls),
        None => error.to_string(),
    }
}
