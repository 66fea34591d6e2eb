//! `outrigger ca init`: the CA (from `outrigger-certs`) plus the key that signs bootstrap
//! tokens, so that one command leaves a data dir ready for `outrigger control-plane`.

use std::path::Path;

use outrigger_certs::{CaPaths, init_ca, write_atomically};

use crate::token::{generate_key, token_key_path};

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Ca(#[from] outrigger_certs::Error),
    #[error("the system random generator failed while making the bootstrap-token key")]
    Random,
    #[error("CA created, but writing the bootstrap-token key failed: {0}")]
    TokenKey(outrigger_certs::Error),
}

/// Creates the CA and the token key in `data_dir`. Refuses to touch an existing CA.
pub fn init(data_dir: &Path, trust_domain: &str) -> Result<CaPaths, InitError> {
    // Made first, so that a broken RNG leaves no half-initialised data dir behind.
    let key = generate_key().map_err(|_| InitError::Random)?;
    let paths = init_ca(data_dir, trust_domain)?;
    // init_ca has renamed its staging dir to `ca/` by now: the key goes in beside it.
    write_atomically(&token_key_path(data_dir), &key, 0o600).map_err(InitError::TokenKey)?;
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::TokenKey;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_a_private_token_key_and_refuses_twice() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), "example.org").unwrap();
        let key_path = token_key_path(dir.path());
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let key = TokenKey::load(dir.path()).unwrap();
        assert_eq!(key.trust_domain(), "example.org");

        let before = std::fs::read(&key_path).unwrap();
        let err = init(dir.path(), "example.org").unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
        assert_eq!(std::fs::read(&key_path).unwrap(), before);
    }
}
