//! Trust-anchor rotation on disk, in three steps that a running control plane picks up
//! (it watches `ca/` and reloads the CA with [`Ca::load`](crate::Ca::load)):
//!
//! 1. [`start`]: a new anchor and an issuer signed by it are written to `ca/next/`. The
//!    bundle becomes the current anchor plus the next one; the current issuer still signs.
//! 2. [`move_issuer`]: the marker `ca/next/issuing` (the Unix time) makes the next issuer
//!    sign every new certificate. The bundle still holds both anchors.
//! 3. [`finish`]: once no certificate of the old issuer can still be valid, the next
//!    anchor and issuer are copied over the current files and `ca/next/` is removed. The
//!    bundle is the new anchor alone.
//!
//! Every state on disk, including one left by a crash half-way through a step, loads as
//! a CA whose issuer chains to an anchor of its bundle; each step can be run again.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::ca::CaMaterial;
use crate::files::{read_to_string, write_atomically};
use crate::{CaPaths, Error};

/// A certificate of the old issuer ends at most `--cert-ttl` after it was signed, and the
/// last one is signed when the control plane notices the marker, a moment after it was
/// written; this covers that moment and clocks slightly apart.
const MARGIN: Duration = Duration::from_secs(60);

/// Where a rotation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotationState {
    /// No rotation: one anchor.
    None,
    /// `start` has run: two anchors, the old issuer signs.
    Started,
    /// `issuer` has run (at this Unix time): two anchors, the new issuer signs.
    Issuing { since: i64 },
}

/// Reads where the rotation in `data_dir` stands.
pub fn state(data_dir: &Path) -> Result<RotationState, Error> {
    let paths = CaPaths::new(data_dir);
    if !paths.trust_anchor().exists() {
        return Err(Error::NoCa(
            paths.dir().to_path_buf(),
            data_dir.display().to_string(),
        ));
    }
    if !paths.next().trust_anchor().exists() {
        return Ok(RotationState::None);
    }
    let marker = paths.issuing_marker();
    if !marker.exists() {
        return Ok(RotationState::Started);
    }
    let since = read_to_string(&marker)?
        .trim()
        .parse()
        .map_err(|e| Error::Rotation(format!("{}: not a Unix time: {e}", marker.display())))?;
    Ok(RotationState::Issuing { since })
}

/// Step 1: makes the next anchor and its issuer in `ca/next/` (keys 0600), which appear
/// whole or not at all. Refuses if a rotation is already under way.
pub fn start(data_dir: &Path) -> Result<CaPaths, Error> {
    if state(data_dir)? != RotationState::None {
        return Err(Error::Rotation(
            "a rotation is already under way (ca/next exists): run `outrigger ca rotate issuer`, then `outrigger ca rotate finish`".into(),
        ));
    }
    let paths = CaPaths::new(data_dir);
    let trust_domain = read_to_string(&paths.trust_domain())?.trim().to_string();
    let material = CaMaterial::generate(&trust_domain)?;
    let staging = paths.dir().join(format!(".next-{}", std::process::id()));
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(|e| Error::io(&staging, e))?;
    let next = paths.next();
    let written = material
        .write(&CaPaths::at(staging.clone()))
        .and_then(|()| {
            // rename(2) refuses to replace a non-empty directory: a concurrent start loses.
            fs::rename(&staging, next.dir()).map_err(|e| match e.kind() {
                std::io::ErrorKind::DirectoryNotEmpty | std::io::ErrorKind::AlreadyExists => {
                    Error::Rotation("a rotation is already under way (ca/next exists)".into())
                }
                _ => Error::io(next.dir(), e),
            })
        });
    if written.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    written.map(|()| next)
}

/// Step 2: the next issuer signs from now on. Returns the time it moved (now, or when
/// an earlier run moved it). Refuses without a started rotation.
pub fn move_issuer(data_dir: &Path) -> Result<i64, Error> {
    match state(data_dir)? {
        RotationState::None => Err(Error::Rotation(
            "no rotation under way: run `outrigger ca rotate start` first".into(),
        )),
        RotationState::Issuing { since } => Ok(since),
        RotationState::Started => {
            let now = unix_now();
            let marker = CaPaths::new(data_dir).issuing_marker();
            write_atomically(&marker, now.to_string().as_bytes(), 0o644)?;
            Ok(now)
        }
    }
}

/// When the last certificate the old issuer may have signed expires, for certificates
/// that live `cert_ttl` (the control plane's `--cert-ttl`).
pub fn old_certificates_expire(issuing_since: i64, cert_ttl: Duration) -> i64 {
    issuing_since + (cert_ttl + MARGIN).as_secs() as i64
}

/// Step 3: the next anchor and issuer become the current ones; the old anchor leaves the
/// bundle. Refuses while certificates of the old issuer may still be valid (they live
/// `cert_ttl`), unless `force`.
pub fn finish(data_dir: &Path, cert_ttl: Duration, force: bool) -> Result<(), Error> {
    let since = match state(data_dir)? {
        RotationState::None => {
            return Err(Error::Rotation(
                "no rotation under way: run `outrigger ca rotate start` first".into(),
            ));
        }
        RotationState::Started => {
            return Err(Error::Rotation(
                "the issuer has not moved to the new anchor yet: run `outrigger ca rotate issuer` first".into(),
            ));
        }
        RotationState::Issuing { since } => since,
    };
    let until = old_certificates_expire(since, cert_ttl);
    let now = unix_now();
    if now < until && !force {
        return Err(Error::Rotation(format!(
            "certificates signed under the old anchor may be valid for {}s more (the issuer moved {}s ago; certificates live {}s, --cert-ttl): removing the old anchor now would fail their connections. Run this again after that, or add --force",
            until - now,
            now - since,
            cert_ttl.as_secs()
        )));
    }
    let paths = CaPaths::new(data_dir);
    let next = paths.next();
    CaMaterial::read(&next)?.write(&paths)?;
    // Out of the way in one rename, so that no reader sees half of ca/next.
    let done = paths
        .dir()
        .join(format!(".next-finished-{}", std::process::id()));
    fs::rename(next.dir(), &done).map_err(|e| Error::io(next.dir(), e))?;
    fs::remove_dir_all(&done).map_err(|e| Error::io(&done, e))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Ca, SpiffeId, WorkloadKey, certs_from_pem};

    fn anchors(ca: &Ca) -> usize {
        certs_from_pem(ca.trust_bundle_pem()).unwrap().len()
    }

    fn sign(ca: &Ca) -> Vec<rustls_pki_types::CertificateDer<'static>> {
        let id = SpiffeId::from_short("cluster.local", "ns/a").unwrap();
        let csr = WorkloadKey::generate().unwrap().csr_pem(&id).unwrap();
        ca.sign_csr(&csr, &id, Duration::from_secs(60))
            .unwrap()
            .chain
    }

    #[test]
    fn the_three_steps_move_bundle_and_issuer() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        crate::init_ca(dir.path(), "cluster.local").unwrap();
        let before = Ca::load(dir.path()).unwrap();
        let old_anchor = before.trust_bundle_pem().to_string();
        assert_eq!(anchors(&before), 1);

        let next = start(dir.path()).unwrap();
        for key in [next.issuer_key(), next.trust_anchor_key()] {
            let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
        let err = start(dir.path()).unwrap_err().to_string();
        assert!(err.contains("already under way"), "{err}");
        let started = Ca::load(dir.path()).unwrap();
        assert_eq!(anchors(&started), 2);
        assert_eq!(started.issuer_der(), before.issuer_der(), "old issuer");
        let err = finish(dir.path(), Duration::ZERO, false).unwrap_err();
        assert!(err.to_string().contains("ca rotate issuer"), "{err}");

        let since = move_issuer(dir.path()).unwrap();
        assert_eq!(move_issuer(dir.path()).unwrap(), since, "idempotent");
        let issuing = Ca::load(dir.path()).unwrap();
        assert_eq!(anchors(&issuing), 2);
        assert_ne!(issuing.issuer_der(), before.issuer_der(), "new issuer");
        let next_issuer = certs_from_pem(&fs::read_to_string(next.issuer()).unwrap()).unwrap();
        assert_eq!(issuing.issuer_der(), &next_issuer[0]);
        assert_eq!(
            sign(&issuing)[1],
            next_issuer[0],
            "chains to the next anchor"
        );

        let err = finish(dir.path(), Duration::from_secs(3600), false).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        finish(dir.path(), Duration::from_secs(3600), true).unwrap();
        assert!(!next.dir().exists());
        let finished = Ca::load(dir.path()).unwrap();
        assert_eq!(anchors(&finished), 1);
        assert_ne!(finished.trust_bundle_pem(), old_anchor);
        assert_eq!(finished.issuer_der(), issuing.issuer_der());
        assert_eq!(state(dir.path()).unwrap(), RotationState::None);
        let leftovers: Vec<_> = fs::read_dir(CaPaths::new(dir.path()).dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
