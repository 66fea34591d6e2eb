//! Identity for the mesh: SPIFFE ids, the CA that issues workload certificates, the
//! sidecar's key and CSR, and the rustls configurations that make every hop mutual TLS
//! with identities checked. Used by both the proxy and the control plane.

mod ca;
pub mod csr;
mod error;
mod files;
mod pem;
mod renewal;
pub mod rotation;
mod spiffe;
mod tls;
mod workload;
mod x509;

pub use ca::{Ca, CaPaths, Issued, init as init_ca};
pub use error::Error;
pub use files::{read_to_string, write_atomically};
pub use pem::{certs_from_pem, certs_to_pem, der_to_pem, key_from_pem};
pub use renewal::{MIN_RENEW_WAIT, RENEW_AT, renew_after, unix_now};
pub use spiffe::{DEFAULT_TRUST_DOMAIN, SpiffeId, SpiffeIdError};
pub use tls::{
    CertStore, ClientIdVerifier, IdentityError, ServerIdVerifier, TrustBundle, check_peer_id,
    client_config, describe_tls_error, peer_identity, provider, server_config,
};
pub use workload::WorkloadKey;
pub use x509::{issued_at_unix, not_after_unix, not_before_unix, spiffe_id_of};
