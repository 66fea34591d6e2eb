//! The sidecar's side of issuance: a key made in memory, a CSR, and the rustls key that
//! results once the CA has answered. The private key never leaves the process.

use std::sync::Arc;

use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::{Error, SpiffeId, tls::provider};

/// A freshly generated ECDSA P-256 key pair.
pub struct WorkloadKey {
    key: KeyPair,
}

impl WorkloadKey {
    pub fn generate() -> Result<Self, Error> {
        Ok(WorkloadKey {
            key: KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?,
        })
    }

    /// A PEM CSR asking for `identity` (the CA decides what it actually signs).
    pub fn csr_pem(&self, identity: &SpiffeId) -> Result<String, Error> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(identity.as_str().try_into()?)];
        Ok(params.serialize_request(&self.key)?.pem()?)
    }

    /// A PEM CSR naming no identity: the CA signs the identity the caller proves (token or
    /// current certificate), so a sidecar need not know its own identity beforehand.
    pub fn csr_pem_without_identity(&self) -> Result<String, Error> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        Ok(params.serialize_request(&self.key)?.pem()?)
    }

    /// The rustls signing key with its chain; fails if the chain is not for this key.
    pub fn certified_key(
        &self,
        chain: Vec<CertificateDer<'static>>,
    ) -> Result<Arc<CertifiedKey>, Error> {
        if chain.is_empty() {
            return Err(Error::Certificate("empty certificate chain".into()));
        }
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()));
        let signing = provider().key_provider.load_private_key(der)?;
        let certified = CertifiedKey::new(chain, signing);
        certified.keys_match()?;
        Ok(Arc::new(certified))
    }
}
