//! What a CSR is checked for before anything costly is done with it. Reading the key's
//! algorithm and size is a parse; verifying the CSR's signature with a 16,384-bit RSA key,
//! or signing a certificate for it, is not. So [`inspect`] runs first, on every request,
//! and only a CSR it accepts reaches [`crate::Ca::sign_csr`] (which verifies the
//! signature).
//!
//! Accepted keys (docs/control-plane-limits.md):
//! - ECDSA P-256 with SHA-256: what sidecars make ([`crate::WorkloadKey`]);
//! - ECDSA P-384 with SHA-384;
//! - Ed25519;
//! - RSA of 2,048 to 4,096 bits with SHA-256, -384 or -512 (PKCS #1 v1.5), for tools
//!   that only make RSA keys.
//!
//! The signature algorithm must go with the key: the certificate's key is labelled from
//! it, so a P-384 key signed "with SHA-256" would make a certificate nobody can verify.

use rustls_pki_types::CertificateSigningRequestDer;
use rustls_pki_types::pem::PemObject as _;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA, OID_PKCS1_SHA512WITHRSA,
    OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer as _;

use crate::Error;

/// Smallest RSA modulus accepted, in bits (NIST SP 800-57: 2048 until 2030).
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits: a bigger key costs the CA more to check than
/// it protects (verifying scales with the square of the size).
pub const MAX_RSA_BITS: usize = 4096;

/// The kinds of key the CA signs for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsrKey {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    /// With its modulus size in bits.
    Rsa(usize),
}

/// A CSR that passed [`inspect`]: its key, and the SPIFFE id it asks for, if any.
#[derive(Clone, Debug)]
pub struct CheckedCsr {
    pub der: CertificateSigningRequestDer<'static>,
    pub key: CsrKey,
    /// The `spiffe://` URI SAN the CSR requests (sidecars send none).
    pub asks_for: Option<String>,
}

/// What is accepted, in words, for the refusals.
const ACCEPTED: &str =
    "ECDSA P-256 (what sidecars make), ECDSA P-384, Ed25519, or RSA of 2048 to 4096 bits";

/// Reads a PEM CSR's key and requested identity without verifying its signature.
pub fn inspect(csr_pem: &str) -> Result<CheckedCsr, Error> {
    let der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map_err(|e| Error::Csr(format!("not a PEM CERTIFICATE REQUEST: {e}")))?;
    let (rest, csr) = X509CertificationRequest::from_der(der.as_ref())
        .map_err(|e| Error::Csr(format!("not a PKCS #10 request: {e}")))?;
    if !rest.is_empty() {
        return Err(Error::Csr("trailing bytes after the request".into()));
    }
    let key = key_of(&csr)?;
    let asks_for = requested_spiffe_id(&csr)?;
    Ok(CheckedCsr { der, key, asks_for })
}

fn key_of(csr: &X509CertificationRequest<'_>) -> Result<CsrKey, Error> {
    let spki = &csr.certification_request_info.subject_pki;
    let key_alg = &spki.algorithm.algorithm;
    let sig_alg = &csr.signature_algorithm.algorithm;
    let key = if *key_alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        match curve {
            Some(c) if c == OID_EC_P256 => CsrKey::EcdsaP256,
            Some(c) if c == OID_NIST_EC_P384 => CsrKey::EcdsaP384,
            Some(c) => {
                return Err(Error::Csr(format!(
                    "elliptic curve {c} is not accepted; use {ACCEPTED}"
                )));
            }
            None => return Err(Error::Csr("EC key without a named curve".into())),
        }
    } else if *key_alg == OID_SIG_ED25519 {
        CsrKey::Ed25519
    } else if *key_alg == OID_PKCS1_RSAENCRYPTION {
        let bits = rsa_modulus_bits(&spki.subject_public_key.data)?;
        if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
            return Err(Error::Csr(format!(
                "RSA key of {bits} bits is not accepted: RSA keys must have {MIN_RSA_BITS} to {MAX_RSA_BITS} bits"
            )));
        }
        CsrKey::Rsa(bits)
    } else {
        return Err(Error::Csr(format!(
            "key algorithm {key_alg} is not accepted; use {ACCEPTED}"
        )));
    };
    let matches = match key {
        CsrKey::EcdsaP256 => *sig_alg == OID_SIG_ECDSA_WITH_SHA256,
        CsrKey::EcdsaP384 => *sig_alg == OID_SIG_ECDSA_WITH_SHA384,
        CsrKey::Ed25519 => *sig_alg == OID_SIG_ED25519,
        CsrKey::Rsa(_) => [
            OID_PKCS1_SHA256WITHRSA,
            OID_PKCS1_SHA384WITHRSA,
            OID_PKCS1_SHA512WITHRSA,
        ]
        .contains(sig_alg),
    };
    if !matches {
        return Err(Error::Csr(format!(
            "signature algorithm {sig_alg} does not go with a {key:?} key"
        )));
    }
    Ok(key)
}

/// The size of an RSAPublicKey's modulus, read from its DER without building the key.
fn rsa_modulus_bits(der: &[u8]) -> Result<usize, Error> {
    let (_, key) = x509_parser::public_key::RSAPublicKey::from_der(der)
        .map_err(|_| Error::Csr("RSA public key is not DER".into()))?;
    // A positive INTEGER may carry a leading zero byte; the size counts from the top bit.
    let modulus = match key.modulus.iter().position(|b| *b != 0) {
        Some(first) => &key.modulus[first..],
        None => return Err(Error::Csr("RSA modulus is zero".into())),
    };
    Ok(modulus.len() * 8 - modulus[0].leading_zeros() as usize)
}

/// The one `spiffe://` URI SAN the CSR requests, if any; two are refused.
fn requested_spiffe_id(csr: &X509CertificationRequest<'_>) -> Result<Option<String>, Error> {
    let mut found = None;
    for extension in csr.requested_extensions().into_iter().flatten() {
        let ParsedExtension::SubjectAlternativeName(san) = extension else {
            continue;
        };
        for name in &san.general_names {
            if let GeneralName::URI(uri) = name
                && uri.starts_with("spiffe://")
            {
                if found.is_some() {
                    return Err(Error::Csr("more than one spiffe:// URI SAN".into()));
                }
                found = Some(uri.to_string());
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, KeyPair, SanType};

    use super::*;

    fn csr_with(alg: &'static rcgen::SignatureAlgorithm, sans: Vec<SanType>) -> String {
        let key = KeyPair::generate_for(alg).unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    fn uri(s: &str) -> SanType {
        SanType::URI(s.try_into().unwrap())
    }

    #[test]
    fn accepts_the_sidecars_key_and_the_other_listed_ones() {
        let sidecar = crate::WorkloadKey::generate()
            .unwrap()
            .csr_pem_without_identity()
            .unwrap();
        let checked = inspect(&sidecar).unwrap();
        assert_eq!(checked.key, CsrKey::EcdsaP256);
        assert_eq!(checked.asks_for, None);
        let p384 = csr_with(&rcgen::PKCS_ECDSA_P384_SHA384, vec![]);
        assert_eq!(inspect(&p384).unwrap().key, CsrKey::EcdsaP384);
        let ed = csr_with(&rcgen::PKCS_ED25519, vec![]);
        assert_eq!(inspect(&ed).unwrap().key, CsrKey::Ed25519);
    }

    #[test]
    fn reads_the_identity_asked_for() {
        let csr = csr_with(
            &rcgen::PKCS_ECDSA_P256_SHA256,
            vec![
                SanType::DnsName("a.example".try_into().unwrap()),
                uri("spiffe://cluster.local/ns/a/sa/b"),
            ],
        );
        assert_eq!(
            inspect(&csr).unwrap().asks_for.as_deref(),
            Some("spiffe://cluster.local/ns/a/sa/b")
        );
        let two = csr_with(
            &rcgen::PKCS_ECDSA_P256_SHA256,
            vec![
                uri("spiffe://cluster.local/ns/a/sa/b"),
                uri("spiffe://cluster.local/ns/a/sa/c"),
            ],
        );
        assert!(inspect(&two).is_err());
    }

    #[test]
    fn counts_rsa_modulus_bits_from_the_top_bit() {
        // RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
        let der = |modulus: &[u8]| {
            let mut int = vec![0x02, 0x82];
            int.extend_from_slice(&(modulus.len() as u16).to_be_bytes());
            int.extend_from_slice(modulus);
            int.extend_from_slice(&[0x02, 0x03, 0x01, 0x00, 0x01]);
            let mut seq = vec![0x30, 0x82];
            seq.extend_from_slice(&(int.len() as u16).to_be_bytes());
            seq.extend(int);
            seq
        };
        let mut n = vec![0x00, 0x80];
        n.extend(vec![0x01; 2047]);
        assert_eq!(rsa_modulus_bits(&der(&n)).unwrap(), 16_384);
        let mut n = vec![0x01];
        n.extend(vec![0xff; 255]);
        assert_eq!(rsa_modulus_bits(&der(&n)).unwrap(), 2_041);
        assert!(rsa_modulus_bits(&der(&[0, 0])).is_err());
    }

    /// A key that claims a 16,384-bit RSA modulus and signs with zeros: [`inspect`] must
    /// refuse the CSR from its key alone, before any signature is checked.
    struct HugeRsa(Vec<u8>);

    impl HugeRsa {
        fn new(bits: usize) -> Self {
            let mut modulus = vec![0x00, 0x80];
            modulus.extend(vec![0x01; bits / 8 - 1]);
            let mut int = vec![0x02, 0x82];
            int.extend_from_slice(&(modulus.len() as u16).to_be_bytes());
            int.extend(modulus);
            int.extend_from_slice(&[0x02, 0x03, 0x01, 0x00, 0x01]);
            let mut der = vec![0x30, 0x82];
            der.extend_from_slice(&(int.len() as u16).to_be_bytes());
            der.extend(int);
            HugeRsa(der)
        }
    }

    impl rcgen::PublicKeyData for HugeRsa {
        fn der_bytes(&self) -> &[u8] {
            &self.0
        }
        fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
            &rcgen::PKCS_RSA_SHA256
        }
    }

    impl rcgen::SigningKey for HugeRsa {
        fn sign(&self, _msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
            Ok(vec![0; 16])
        }
    }

    #[test]
    fn rsa_between_2048_and_4096_bits_only() {
        let rsa = csr_with(&rcgen::PKCS_RSA_SHA256, vec![]);
        assert_eq!(inspect(&rsa).unwrap().key, CsrKey::Rsa(2048));
        let huge = CertificateParams::default()
            .serialize_request(&HugeRsa::new(16_384))
            .unwrap()
            .pem()
            .unwrap();
        let err = inspect(&huge).unwrap_err().to_string();
        assert!(
            err.contains("RSA key of 16384 bits is not accepted"),
            "{err}"
        );
    }

    #[test]
    fn other_curves_and_unknown_algorithms_are_named() {
        let p521 = csr_with(&rcgen::PKCS_ECDSA_P521_SHA512, vec![]);
        let err = inspect(&p521).unwrap_err().to_string();
        assert!(err.contains("curve 1.3.132.0.35 is not accepted"), "{err}");
        // id-ecPublicKey (1.2.840.10045.2.1) turned into 1.2.840.10045.2.9, which nobody
        // assigned: the signature no longer verifies, but the key is refused first.
        let pem = csr_with(&rcgen::PKCS_ECDSA_P256_SHA256, vec![]);
        let mut der = CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec();
        let oid = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
        let at = der.windows(oid.len()).position(|w| w == oid).unwrap();
        der[at + oid.len() - 1] = 0x09;
        let unknown = crate::pem::der_to_pem("CERTIFICATE REQUEST", &der);
        let err = inspect(&unknown).unwrap_err().to_string();
        assert!(
            err.contains("key algorithm 1.2.840.10045.2.9 is not accepted"),
            "{err}"
        );
        // A P-256 key "signed with SHA-384" would be labelled wrongly in the certificate.
        let mut der = CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec();
        let sha256 = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
        let at = der
            .windows(sha256.len())
            .rposition(|w| w == sha256)
            .unwrap();
        der[at + sha256.len() - 1] = 0x03;
        let mismatched = crate::pem::der_to_pem("CERTIFICATE REQUEST", &der);
        let err = inspect(&mismatched).unwrap_err().to_string();
        assert!(err.contains("does not go with a EcdsaP256 key"), "{err}");
    }

    #[test]
    fn refuses_garbage_with_a_reason() {
        for (bad, says) in [
            ("not a csr", "PEM"),
            (
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
                "PKCS #10",
            ),
        ] {
            let err = inspect(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
        }
    }
}
