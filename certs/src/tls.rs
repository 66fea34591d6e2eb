//! rustls configurations for mesh mTLS (TLS 1.3 only): chains are verified against a
//! trust bundle that can be replaced at run time, and peers by their SPIFFE id, not by
//! DNS names. Certificates are resolved from a [`CertStore`], so a renewed certificate
//! is used by the next handshake without touching established connections.

use std::fmt;
use std::sync::{Arc, OnceLock};

use arc_swap::{ArcSwap, ArcSwapOption};
use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    RootCertStore, ServerConfig, SignatureScheme,
};

use crate::{Error, SpiffeId, pem, x509};

/// The one crypto provider of the workspace (aws-lc-rs), shared by every config.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}

/// The certificate this process presents, swappable at any time.
#[derive(Default)]
pub struct CertStore {
    current: ArcSwapOption<CertifiedKey>,
}

impl CertStore {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn set(&self, key: Arc<CertifiedKey>) {
        self.current.store(Some(key));
    }

    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current.load_full()
    }
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("has_cert", &self.current.load().is_some())
            .finish()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

impl ResolvesClientCert for CertStore {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.current()
    }

    fn has_certs(&self) -> bool {
        self.current.load().is_some()
    }
}

struct Roots {
    store: Arc<RootCertStore>,
    /// webpki's client verifier for these roots; built once per bundle, not per handshake.
    clients: Arc<dyn ClientCertVerifier>,
    pem: String,
}

/// The trust anchors, replaceable at run time (anchor rotation needs no restart).
pub struct TrustBundle {
    roots: ArcSwap<Roots>,
}

impl TrustBundle {
    pub fn from_pem(pem: &str) -> Result<Arc<Self>, Error> {
        Ok(Arc::new(TrustBundle {
            roots: ArcSwap::from_pointee(Self::parse(pem)?),
        }))
    }

    /// Replaces the anchors; returns whether anything changed. A bad bundle changes nothing.
    pub fn update(&self, pem: &str) -> Result<bool, Error> {
        if self.roots.load().pem == pem {
            return Ok(false);
        }
        self.roots.store(Arc::new(Self::parse(pem)?));
        Ok(true)
    }

    pub fn pem(&self) -> String {
        self.roots.load().pem.clone()
    }

    fn parse(pem: &str) -> Result<Roots, Error> {
        let mut store = RootCertStore::empty();
        for cert in pem::certs_from_pem(pem)? {
            store.add(cert)?;
        }
        let store = Arc::new(store);
        let clients = WebPkiClientVerifier::builder_with_provider(store.clone(), provider())
            .build()
            .map_err(|e| Error::Certificate(e.to_string()))?;
        Ok(Roots {
            store,
            clients,
            pem: pem.to_string(),
        })
    }
}

/// Why a peer's certificate was refused although its chain was good. Its text ends up in
/// the rustls error, so the log says why.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("peer identity is {presented}, expected {expected}")]
    Mismatch { expected: String, presented: String },
    #[error("peer identity {presented} is not in trust domain {trust_domain}")]
    ForeignTrustDomain {
        trust_domain: String,
        presented: String,
    },
    #[error("peer certificate has no usable SPIFFE id: {0}")]
    Missing(String),
}

fn refuse(err: IdentityError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(err))))
}

fn peer_id(end_entity: &CertificateDer<'_>) -> Result<SpiffeId, rustls::Error> {
    x509::spiffe_id_of(end_entity).map_err(|e| refuse(IdentityError::Missing(e.to_string())))
}

/// Client side: the server must chain to the bundle and present `expected`.
pub struct ServerIdVerifier {
    bundle: Arc<TrustBundle>,
    expected: ExpectedServer,
}

#[derive(Debug)]
enum ExpectedServer {
    /// Exactly this identity (the control plane).
    Exactly(SpiffeId),
    /// Any identity of this trust domain. The caller checks the exact identity on the
    /// established connection ([`check_peer_id`]), so that one client config serves
    /// every destination: its verifier, roots and session cache are not copied per
    /// service.
    InTrustDomain(String),
}

impl ServerIdVerifier {
    /// The server must present exactly `expected`.
    pub fn new(bundle: Arc<TrustBundle>, expected: SpiffeId) -> Arc<Self> {
        Arc::new(ServerIdVerifier {
            bundle,
            expected: ExpectedServer::Exactly(expected),
        })
    }

    /// The server must present an identity of `trust_domain`; which one is checked per
    /// connection with [`check_peer_id`].
    pub fn in_trust_domain(bundle: Arc<TrustBundle>, trust_domain: &str) -> Arc<Self> {
        Arc::new(ServerIdVerifier {
            bundle,
            expected: ExpectedServer::InTrustDomain(trust_domain.to_string()),
        })
    }
}

impl fmt::Debug for ServerIdVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerIdVerifier")
            .field("expected", &self.expected)
            .finish()
    }
}

/// Whether the peer of an established connection (its certificates, leaf first) is
/// `expected`. The chain was verified during the handshake; this checks the identity.
pub fn check_peer_id(
    certs: Option<&[CertificateDer<'_>]>,
    expected: &SpiffeId,
) -> Result<(), IdentityError> {
    let leaf = certs
        .and_then(|c| c.first())
        .ok_or_else(|| IdentityError::Missing("no certificate presented".into()))?;
    let presented = x509::spiffe_id_of(leaf).map_err(|e| IdentityError::Missing(e.to_string()))?;
    if presented != *expected {
        return Err(IdentityError::Mismatch {
            expected: expected.to_string(),
            presented: presented.to_string(),
        });
    }
    Ok(())
}

impl ServerCertVerifier for ServerIdVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        let roots = self.bundle.roots.load();
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &roots.store,
            intermediates,
            now,
            provider().signature_verification_algorithms.all,
        )?;
        let presented = peer_id(end_entity)?;
        match &self.expected {
            ExpectedServer::Exactly(expected) if presented != *expected => {
                Err(refuse(IdentityError::Mismatch {
                    expected: expected.to_string(),
                    presented: presented.to_string(),
                }))
            }
            ExpectedServer::InTrustDomain(domain) if presented.trust_domain() != domain => {
                Err(refuse(IdentityError::ForeignTrustDomain {
                    trust_domain: domain.clone(),
                    presented: presented.to_string(),
                }))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The configs built here only speak TLS 1.3.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Server side: a client certificate must chain to the bundle and carry a SPIFFE id of our
/// trust domain. Which identities may do what is authorization's business, later.
pub struct ClientIdVerifier {
    bundle: Arc<TrustBundle>,
    trust_domain: String,
    mandatory: bool,
}

impl ClientIdVerifier {
    /// Every client must present a certificate (sidecar inbound).
    pub fn required(bundle: Arc<TrustBundle>, trust_domain: &str) -> Arc<Self> {
        Arc::new(ClientIdVerifier {
            bundle,
            trust_domain: trust_domain.to_string(),
            mandatory: true,
        })
    }

    /// A certificate is checked if presented, but not required (the control plane, where
    /// a first-time sidecar holds only a bootstrap token).
    pub fn optional(bundle: Arc<TrustBundle>, trust_domain: &str) -> Arc<Self> {
        Arc::new(ClientIdVerifier {
            bundle,
            trust_domain: trust_domain.to_string(),
            mandatory: false,
        })
    }
}

impl fmt::Debug for ClientIdVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdVerifier")
            .field("trust_domain", &self.trust_domain)
            .field("mandatory", &self.mandatory)
            .finish()
    }
}

impl ClientCertVerifier for ClientIdVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: sidecars have exactly one certificate to offer.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let roots = self.bundle.roots.load();
        roots
            .clients
            .verify_client_cert(end_entity, intermediates, now)?;
        let presented = peer_id(end_entity)?;
        if presented.trust_domain() != self.trust_domain {
            return Err(refuse(IdentityError::ForeignTrustDomain {
                trust_domain: self.trust_domain.clone(),
                presented: presented.to_string(),
            }));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS 1.3 server config presenting `certs` and verifying clients with `clients`.
pub fn server_config(
    certs: Arc<CertStore>,
    clients: Arc<ClientIdVerifier>,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(clients)
        .with_cert_resolver(certs);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A TLS 1.3 client config verifying the server with `server`, presenting `certs` if any.
pub fn client_config(
    certs: Option<Arc<CertStore>>,
    server: Arc<ServerIdVerifier>,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, Error> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(server);
    let mut config = match certs {
        Some(certs) => builder.with_client_cert_resolver(certs),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The SPIFFE id of the peer of an established connection, if it presented a certificate.
pub fn peer_identity(certs: Option<&[CertificateDer<'static>]>) -> Option<SpiffeId> {
    x509::spiffe_id_of(certs?.first()?).ok()
}

/// A one-line reason for a failed handshake, fit for a log line: our identity errors in
/// their own words, anything else as rustls says it.
pub fn describe_tls_error(err: &rustls::Error) -> String {
    match err {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
            inner.to_string()
        }
        other => other.to_string(),
    }
}
