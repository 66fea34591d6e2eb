//! The mesh CA: a trust anchor (root, 10 years) and an issuer (intermediate, 1 year) that
//! signs workload certificates. On disk, under `<data-dir>/ca/`.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::csr::{self, CheckedCsr};
use crate::files::{read_to_string, write_atomically};
use crate::{Error, SpiffeId, pem, x509};

const TRUST_ANCHOR_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
const ISSUER_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// Workload certificates start a little in the past, so that a peer whose clock is
/// slightly behind does not reject a certificate issued a moment ago.
pub(crate) const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Where the CA's files live inside a data dir.
#[derive(Clone, Debug)]
pub struct CaPaths {
    dir: PathBuf,
}

impl CaPaths {
    pub fn new(data_dir: &Path) -> Self {
        CaPaths {
            dir: data_dir.join("ca"),
        }
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The file sidecars need to verify the mesh (and the control plane).
    pub fn trust_anchor(&self) -> PathBuf {
        self.dir.join("trust-anchor.pem")
    }
    /// Kept so that a new issuer can be signed when the current one nears its end;
    /// operators who keep the root offline may move it away once the CA is initialised.
    pub fn trust_anchor_key(&self) -> PathBuf {
        self.dir.join("trust-anchor.key")
    }
    pub fn issuer(&self) -> PathBuf {
        self.dir.join("issuer.pem")
    }
    pub fn issuer_key(&self) -> PathBuf {
        self.dir.join("issuer.key")
    }
    pub fn trust_domain(&self) -> PathBuf {
        self.dir.join("trust-domain")
    }
    /// During an anchor rotation: the next trust anchor and its issuer, in `ca/next/`
    /// (see [`crate::rotation`]).
    pub fn next(&self) -> CaPaths {
        CaPaths {
            dir: self.dir.join("next"),
        }
    }
    /// Present (in `ca/next/`) once the issuer has moved to the next anchor; holds the
    /// Unix time it moved.
    pub fn issuing_marker(&self) -> PathBuf {
        self.next().dir.join("issuing")
    }
    pub(crate) fn at(dir: PathBuf) -> CaPaths {
        CaPaths { dir }
    }
}

/// Creates a new CA in `data_dir` (created if missing). Refuses to replace an existing one.
///
/// Every file is written into a private temporary directory which is then renamed to
/// `ca/`, so the CA appears whole or not at all.
pub fn init(data_dir: &Path, trust_domain: &str) -> Result<CaPaths, Error> {
    // Validates the trust domain with the same rules as an id.
    SpiffeId::workload(trust_domain, "ns", "sa")?;
    let paths = CaPaths::new(data_dir);
    if paths.dir().exists() {
        return Err(Error::CaExists(paths.dir().to_path_buf()));
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .map_err(|e| Error::io(data_dir, e))?;

    let material = CaMaterial::generate(trust_domain)?;

    let staging = data_dir.join(format!(".ca-init-{}", std::process::id()));
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(|e| Error::io(&staging, e))?;
    let staged = CaPaths {
        dir: staging.clone(),
    };
    let written = (|| {
        material.write(&staged)?;
        write_atomically(&staged.trust_domain(), trust_domain.as_bytes(), 0o644)?;
        // rename(2) refuses to replace a non-empty directory: a concurrent init loses cleanly.
        fs::rename(&staging, paths.dir()).map_err(|e| match e.kind() {
            std::io::ErrorKind::DirectoryNotEmpty | std::io::ErrorKind::AlreadyExists => {
                Error::CaExists(paths.dir().to_path_buf())
            }
            _ => Error::io(paths.dir(), e),
        })
    })();
    if written.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    written.map(|()| paths)
}

/// A new trust anchor and an issuer signed by it, as PEM.
pub(crate) struct CaMaterial {
    anchor: String,
    anchor_key: String,
    issuer: String,
    issuer_key: String,
}

impl CaMaterial {
    pub(crate) fn generate(trust_domain: &str) -> Result<CaMaterial, Error> {
        let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let root_params = ca_params(
            &format!("Outrigger trust anchor ({trust_domain})"),
            TRUST_ANCHOR_LIFETIME,
            1,
        );
        let root_cert = root_params.self_signed(&root_key)?;
        let root = Issuer::new(root_params, &root_key);

        let issuer_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let issuer_params = ca_params(
            &format!("Outrigger issuer ({trust_domain})"),
            ISSUER_LIFETIME,
            0,
        );
        let issuer_cert = issuer_params.signed_by(&issuer_key, &root)?;
        Ok(CaMaterial {
            anchor: root_cert.pem(),
            anchor_key: root_key.serialize_pem(),
            issuer: issuer_cert.pem(),
            issuer_key: issuer_key.serialize_pem(),
        })
    }

    /// Reads the anchor and issuer files of `paths`.
    pub(crate) fn read(paths: &CaPaths) -> Result<CaMaterial, Error> {
        Ok(CaMaterial {
            anchor: read_to_string(&paths.trust_anchor())?,
            anchor_key: read_to_string(&paths.trust_anchor_key())?,
            issuer: read_to_string(&paths.issuer())?,
            issuer_key: read_to_string(&paths.issuer_key())?,
        })
    }

    /// Writes the four files into `paths`, each atomically; keys 0600. The issuer goes
    /// first, so that a reader of a half-written set (a crash) still finds an anchor and
    /// an issuer that exist on disk.
    pub(crate) fn write(&self, paths: &CaPaths) -> Result<(), Error> {
        write_atomically(&paths.issuer_key(), self.issuer_key.as_bytes(), 0o600)?;
        write_atomically(&paths.issuer(), self.issuer.as_bytes(), 0o644)?;
        write_atomically(&paths.trust_anchor_key(), self.anchor_key.as_bytes(), 0o600)?;
        write_atomically(&paths.trust_anchor(), self.anchor.as_bytes(), 0o644)
    }
}

fn ca_params(common_name: &str, lifetime: Duration, path_len: u8) -> CertificateParams {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - CLOCK_SKEW;
    params.not_after = now + lifetime;
    params.serial_number = Some(random_serial());
    params.use_authority_key_identifier_extension = true;
    params
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    // A failing system RNG leaves zeros; rcgen then still writes a valid serial, and the
    // key generation just before would have failed first anyway.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    bytes[0] &= 0x7f; // positive INTEGER
    SerialNumber::from_slice(&bytes)
}

/// A certificate the CA issued, with the chain up to (not including) the trust anchor.
#[derive(Clone, Debug)]
pub struct Issued {
    pub chain: Vec<CertificateDer<'static>>,
    pub chain_pem: String,
    /// Seconds since the Unix epoch.
    pub not_after: i64,
}

/// A loaded CA, ready to sign.
pub struct Ca {
    trust_domain: String,
    issuer: Issuer<'static, KeyPair>,
    issuer_der: CertificateDer<'static>,
    issuer_not_after: OffsetDateTime,
    trust_bundle_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Loads the CA that `init` wrote into `data_dir`.
    pub fn load(data_dir: &Path) -> Result<Self, Error> {
        let paths = CaPaths::new(data_dir);
        if !paths.trust_anchor().exists() {
            return Err(Error::NoCa(
                paths.dir().to_path_buf(),
                data_dir.display().to_string(),
            ));
        }
        let trust_domain = read_to_string(&paths.trust_domain())?.trim().to_string();
        SpiffeId::workload(&trust_domain, "ns", "sa")?;
        let mut trust_bundle_pem = read_to_string(&paths.trust_anchor())?;
        // During a rotation, sidecars must trust both anchors, and the issuer is the
        // next one once `ca rotate issuer` has run.
        let next = paths.next();
        let mut issuing = &paths;
        if next.trust_anchor().exists() {
            let next_anchor = read_to_string(&next.trust_anchor())?;
            // Half-way through `finish` the current anchor file already holds it.
            if !trust_bundle_pem.contains(next_anchor.trim()) {
                if !trust_bundle_pem.ends_with('\n') {
                    trust_bundle_pem.push('\n');
                }
                trust_bundle_pem.push_str(&next_anchor);
            }
            if paths.issuing_marker().exists() {
                issuing = &next;
            }
        }
        pem::certs_from_pem(&trust_bundle_pem)?;
        let issuer_pem = read_to_string(&issuing.issuer())?;
        let key_pem = read_to_string(&issuing.issuer_key())?;
        let key = KeyPair::from_pem(&key_pem)?;
        let issuer_der = pem::certs_from_pem(&issuer_pem)?.remove(0);
        let issuer_not_after =
            OffsetDateTime::from_unix_timestamp(x509::not_after_unix(&issuer_der)?)
                .map_err(|e| Error::Certificate(e.to_string()))?;
        let issuer = Issuer::from_ca_cert_der(&issuer_der, key)?;
        Ok(Ca {
            trust_domain,
            issuer,
            issuer_der,
            issuer_not_after,
            trust_bundle_pem,
        })
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The issuer certificate that signs new certificates.
    pub fn issuer_der(&self) -> &CertificateDer<'static> {
        &self.issuer_der
    }

    /// The PEM trust anchors that every sidecar verifies peers against.
    pub fn trust_bundle_pem(&self) -> &str {
        &self.trust_bundle_pem
    }

    /// Signs a CSR for `identity`. Only the CSR's public key is used: the identity is the
    /// one the caller proved, never a SAN the CSR asks for. The key is checked
    /// ([`csr::inspect`]) before the signature.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        identity: &SpiffeId,
        ttl: Duration,
    ) -> Result<Issued, Error> {
        self.sign_checked(&csr::inspect(csr_pem)?, identity, ttl)
    }

    /// [`Ca::sign_csr`] for a CSR already inspected (the control plane inspects it before
    /// it authenticates the caller, the cheaper check first).
    pub fn sign_checked(
        &self,
        csr: &CheckedCsr,
        identity: &SpiffeId,
        ttl: Duration,
    ) -> Result<Issued, Error> {
        let csr = CertificateSigningRequestParams::from_der(&csr.der)
            .map_err(|e| Error::Csr(e.to_string()))?;
        let cert = self
            .workload_params(identity, &[], ttl)?
            .signed_by(&csr.public_key, &self.issuer)?;
        self.issued(cert.der().clone())
    }

    /// Signs a CSR for a server that is reached by DNS name as well as by `identity`:
    /// the control plane, which the Kubernetes API server calls as
    /// `<service>.<namespace>.svc` (it checks the DNS name, not the SPIFFE id).
    pub fn sign_csr_with_dns_names(
        &self,
        csr_pem: &str,
        identity: &SpiffeId,
        dns_names: &[String],
        ttl: Duration,
    ) -> Result<Issued, Error> {
        let csr = CertificateSigningRequestParams::from_der(&csr::inspect(csr_pem)?.der)
            .map_err(|e| Error::Csr(e.to_string()))?;
        let cert = self
            .workload_params(identity, dns_names, ttl)?
            .signed_by(&csr.public_key, &self.issuer)?;
        self.issued(cert.der().clone())
    }

    /// Makes a key and a certificate for `identity` (the control plane's own serving
    /// certificate, and tests).
    pub fn issue(&self, identity: &SpiffeId, ttl: Duration) -> Result<(KeyPair, Issued), Error> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = self
            .workload_params(identity, &[], ttl)?
            .signed_by(&key, &self.issuer)?;
        Ok((key, self.issued(cert.der().clone())?))
    }

    fn workload_params(
        &self,
        identity: &SpiffeId,
        dns_names: &[String],
        ttl: Duration,
    ) -> Result<CertificateParams, Error> {
        if identity.trust_domain() != self.trust_domain {
            return Err(Error::Certificate(format!(
                "{identity} is not in trust domain {}",
                self.trust_domain
            )));
        }
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        // Empty subject: the identity is the URI SAN, which rcgen then marks critical.
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(
            identity.as_str().try_into().map_err(Error::Rcgen)?,
        )];
        for name in dns_names {
            let name = name.as_str().try_into().map_err(Error::Rcgen)?;
            params.subject_alt_names.push(SanType::DnsName(name));
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = now - CLOCK_SKEW;
        // Never outlive the issuer: a chain is only as valid as its shortest link.
        params.not_after = (now + ttl).min(self.issuer_not_after);
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        Ok(params)
    }

    fn issued(&self, leaf: CertificateDer<'static>) -> Result<Issued, Error> {
        let not_after = x509::not_after_unix(&leaf)?;
        let chain = vec![leaf, self.issuer_der.clone()];
        Ok(Issued {
            chain_pem: pem::certs_to_pem(&chain),
            chain,
            not_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WorkloadKey;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::from_short("cluster.local", s).unwrap()
    }

    #[test]
    fn init_writes_private_keys_and_refuses_to_overwrite() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let paths = init(dir.path(), "cluster.local").unwrap();
        for key in [paths.issuer_key(), paths.trust_anchor_key()] {
            let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
        let before = fs::read(paths.issuer_key()).unwrap();
        assert!(matches!(
            init(dir.path(), "cluster.local"),
            Err(Error::CaExists(_))
        ));
        assert_eq!(
            fs::read(paths.issuer_key()).unwrap(),
            before,
            "CA untouched"
        );
    }

    #[test]
    fn load_without_ca_names_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let err = Ca::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("outrigger ca init"), "{err}");
    }

    #[test]
    fn csr_gets_only_the_verified_identity() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), "cluster.local").unwrap();
        let ca = Ca::load(dir.path()).unwrap();
        let key = WorkloadKey::generate().unwrap();
        // The CSR asks for ns/b; the caller proved ns/a.
        let csr = key.csr_pem(&id("ns/b")).unwrap();
        let issued = ca
            .sign_csr(&csr, &id("ns/a"), Duration::from_secs(60))
            .unwrap();
        assert_eq!(x509::spiffe_id_of(&issued.chain[0]).unwrap(), id("ns/a"));
        assert_eq!(issued.chain.len(), 2);
        key.certified_key(issued.chain).unwrap();
    }

    #[test]
    fn rejects_garbage_csr_and_foreign_trust_domain() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), "cluster.local").unwrap();
        let ca = Ca::load(dir.path()).unwrap();
        let err = ca.sign_csr("not a csr", &id("a/b"), Duration::from_secs(60));
        assert!(matches!(err, Err(Error::Csr(_))));
        let foreign = SpiffeId::workload("other.org", "a", "b").unwrap();
        let csr = WorkloadKey::generate().unwrap().csr_pem(&foreign).unwrap();
        assert!(
            ca.sign_csr(&csr, &foreign, Duration::from_secs(60))
                .is_err()
        );
    }
}
