//! The one error type of this crate.

use std::path::PathBuf;

use crate::SpiffeIdError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid certificate: {0}")]
    Certificate(String),
    #[error("invalid SPIFFE id: {0}")]
    SpiffeId(#[from] SpiffeIdError),
    #[error("invalid PEM: {0}")]
    Pem(String),
    #[error("invalid certificate signing request: {0}")]
    Csr(String),
    #[error("{0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("a CA already exists in {0}; refusing to overwrite it")]
    CaExists(PathBuf),
    #[error("no CA in {0}: run `outrigger ca init --data-dir {1}` first")]
    NoCa(PathBuf, String),
    #[error("{0}")]
    Rotation(String),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
