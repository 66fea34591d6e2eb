//! The body of `POST /v1/certificates` and the CSR in it, signed by a real CA as the
//! control plane signs it. A CSR is attacker-chosen bytes: it must be refused as a bad
//! request (never a panic, never a 500), and when it is signed, the certificate must
//! carry the identity the caller proved, whatever the CSR asked for, and the CSR's key.

#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use outrigger_api::CertificateRequest;
use outrigger_certs::{Ca, Error, SpiffeId, not_after_unix, spiffe_id_of};
use x509_parser::prelude::{FromDer, X509Certificate};

/// A CA made once per process: signing is the expensive part, making it is more so.
static CA: LazyLock<(tempfile::TempDir, Ca)> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("temp dir");
    outrigger_certs::init_ca(dir.path(), "cluster.local").expect("CA");
    let ca = Ca::load(dir.path()).expect("CA loads");
    (dir, ca)
});

/// Who the caller proved to be (by token or certificate): never taken from the CSR.
static PROVEN: LazyLock<SpiffeId> =
    LazyLock::new(|| SpiffeId::from_short("cluster.local", "shop/orders").expect("id"));

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A JSON body as the API reads it; anything else is taken as the CSR's PEM itself,
    // so that mutations reach the PEM and DER parsers directly too.
    let csr = match serde_json::from_str::<CertificateRequest>(text) {
        Ok(request) => request.csr,
        Err(_) => text.to_string(),
    };
    let ca = &CA.1;
    match ca.sign_csr(&csr, &PROVEN, Duration::from_secs(3600)) {
        Ok(issued) => {
            assert_eq!(issued.chain.len(), 2, "leaf and issuer");
            assert_eq!(&issued.chain[1], ca.issuer_der());
            let id = spiffe_id_of(&issued.chain[0]).expect("the leaf has a SPIFFE id");
            assert_eq!(id, *PROVEN, "the proven identity, never the CSR's");
            let issuer_end = not_after_unix(ca.issuer_der()).expect("issuer expiry");
            assert!(issued.not_after <= issuer_end, "never outlives its issuer");
            let (_, leaf) = X509Certificate::from_der(&issued.chain[0]).expect("leaf parses");
            let asked = csr_key(&csr).expect("a CSR that was signed parses");
            assert_eq!(
                leaf.public_key().subject_public_key.data.as_ref(),
                asked,
                "the CSR's key"
            );
        }
        // The API answers this one 400; any other error would be a 500.
        Err(Error::Csr(_)) => {}
        Err(other) => panic!("a bad CSR must be a CSR error, not: {other}"),
    }
});

/// The public key bits of a PEM CSR. The PEM is read by the same parser the CA reads it
/// with (`csr::inspect`), since PEM parsers differ on what they forgive: rustls's accepts
/// blank lines inside the base64 (RFC 7468's lax form), the `pem` crate does not, and an
/// oracle that disagrees with the product on PEM would report its own difference as a
/// crash. The key is then read from the DER independently, by x509-parser.
fn csr_key(text: &str) -> Option<Vec<u8>> {
    use x509_parser::certification_request::X509CertificationRequest;
    let checked = outrigger_certs::csr::inspect(text).ok()?;
    let (_, csr) = X509CertificationRequest::from_der(checked.der.as_ref()).ok()?;
    Some(
        csr.certification_request_info
            .subject_pki
            .subject_public_key
            .data
            .to_vec(),
    )
}
