//! Why the control plane could not start. Each message names what to fix.

use std::net::SocketAddr;

use crate::policy::PolicyErrors;
use crate::token::TokenError;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Includes "no CA in <dir>: run `outrigger ca init --data-dir <dir>` first".
    #[error(transparent)]
    Ca(outrigger_certs::Error),
    #[error(transparent)]
    Token(#[from] TokenError),
    /// Every problem of the policy files, one per line.
    #[error(transparent)]
    Policy(#[from] PolicyErrors),
    #[error("cannot issue the control plane's own certificate: {0}")]
    ServingCert(outrigger_certs::Error),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        addr: SocketAddr,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Cluster mode: the API server cannot be reached, or the CA Secret not used.
    #[error("Kubernetes: {0}")]
    Kubernetes(String),
}
