//! PEM in and out, through `rustls-pki-types` (rustls-pemfile is unmaintained).

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::Error;

/// Every certificate in a PEM text, in order. An empty result is an error: a chain or a
/// bundle with no certificate is always a mistake.
pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(Error::Pem("no CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// The private key in a PEM text (PKCS#8, SEC1 or PKCS#1).
pub fn key_from_pem(pem: &str) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| Error::Pem(e.to_string()))
}

/// PEM text for DER certificates, concatenated.
pub fn certs_to_pem(certs: &[CertificateDer<'_>]) -> String {
    certs
        .iter()
        .map(|cert| der_to_pem("CERTIFICATE", cert))
        .collect()
}

/// One PEM block: `label` (e.g. `CERTIFICATE REQUEST`) around base64 lines of 64.
pub fn der_to_pem(label: &str, der: &[u8]) -> String {
    let mut out = format!("-----BEGIN {label}-----\n");
    let b64 = STANDARD.encode(der);
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrips_certificates() {
        let der = CertificateDer::from(vec![1u8, 2, 3, 4, 5, 250, 251]);
        let pem = certs_to_pem(std::slice::from_ref(&der));
        assert_eq!(certs_from_pem(&pem).unwrap(), vec![der]);
        assert!(certs_from_pem("nothing here").is_err());
    }
}
