//! Reading what Outrigger needs out of a DER certificate: its SPIFFE id and its validity.

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{Error, SpiffeId};

/// The SPIFFE id in the certificate's URI SAN. Exactly one `spiffe://` URI is allowed.
pub fn spiffe_id_of(cert: &CertificateDer<'_>) -> Result<SpiffeId, Error> {
    let (_, x509) =
        X509Certificate::from_der(cert).map_err(|e| Error::Certificate(e.to_string()))?;
    let san = x509
        .subject_alternative_name()
        .map_err(|e| Error::Certificate(e.to_string()))?
        .ok_or_else(|| Error::Certificate("no subject alternative name".into()))?;
    let mut uris = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) if uri.starts_with("spiffe://") => Some(*uri),
            _ => None,
        });
    let uri = uris
        .next()
        .ok_or_else(|| Error::Certificate("no spiffe:// URI SAN".into()))?;
    if uris.next().is_some() {
        return Err(Error::Certificate("more than one spiffe:// URI SAN".into()));
    }
    uri.parse().map_err(Error::SpiffeId)
}

/// The certificate's `notAfter`, in seconds since the Unix epoch.
pub fn not_after_unix(cert: &CertificateDer<'_>) -> Result<i64, Error> {
    let (_, x509) =
        X509Certificate::from_der(cert).map_err(|e| Error::Certificate(e.to_string()))?;
    Ok(x509.validity().not_after.timestamp())
}

/// The certificate's `notBefore`, in seconds since the Unix epoch.
pub fn not_before_unix(cert: &CertificateDer<'_>) -> Result<i64, Error> {
    let (_, x509) =
        X509Certificate::from_der(cert).map_err(|e| Error::Certificate(e.to_string()))?;
    Ok(x509.validity().not_before.timestamp())
}

/// When a certificate of this CA was issued, in seconds since the Unix epoch: its
/// `notBefore` plus the clock skew the CA backdates it by.
pub fn issued_at_unix(cert: &CertificateDer<'_>) -> Result<i64, Error> {
    Ok(not_before_unix(cert)? + crate::ca::CLOCK_SKEW.as_secs() as i64)
}
