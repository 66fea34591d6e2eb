//! Revoked identities. A certificate lives 24 hours and a bootstrap token an hour by
//! default; when a workload's key or token leaks, or the workload is retired, waiting for
//! them to expire is too long. `outrigger revoke --identity ns/sa` writes the identity and
//! the time into `<data-dir>/ca/revoked`, and from then on the control plane refuses every
//! token and certificate for that identity issued at or before that time: no new
//! certificate (by token or by renewal), no watch, no registration, no stats; its open
//! watch streams are cut, and its registered instances leave their services' endpoints.
//! A token minted later (the next second on) works again: that is how a workload is let
//! back in with new credentials, and why a revocation is a time, not a flag.
//!
//! "Removed from the policy" is not revocation here: a caller needs no MeshService of its
//! own, so an identity absent from the policy is normal, not suspicious.
//!
//! The file, one identity per line (comments with `#`):
//!
//! ```text
//! spiffe://cluster.local/ns/shop/sa/orders 1764000000
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use outrigger_certs::{CaPaths, SpiffeId};

/// Where the revocations live in a data dir (beside the CA, whose dir is watched).
pub fn revocations_path(data_dir: &Path) -> PathBuf {
    CaPaths::new(data_dir).dir().join("revoked")
}

const HEADER: &str = "\
# Identities revoked with `outrigger revoke`: tokens and certificates for them issued at
# or before the time given (Unix seconds) are refused by the control plane.
";

/// The revoked identities and when each was revoked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Revocations {
    /// SPIFFE id → Unix time of the revocation.
    revoked: BTreeMap<String, i64>,
}

/// A credential issued before its identity was revoked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{identity} was revoked at {revoked_at} (Unix time); this {what} was issued at {issued_at}, before that: ask the operator for a new bootstrap token"
)]
pub struct Revoked {
    pub identity: String,
    pub revoked_at: i64,
    pub issued_at: i64,
    /// "certificate" or "bootstrap token".
    pub what: &'static str,
}

impl Revocations {
    /// The revocations in `data_dir`; none when the file does not exist.
    pub fn load(data_dir: &Path) -> Result<Revocations, String> {
        let path = revocations_path(data_dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => Revocations::parse(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Revocations::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Parses the file's text; an error names the line.
    pub fn parse(text: &str) -> Result<Revocations, String> {
        let mut revoked = BTreeMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |what: &str| format!("line {}: {what}: {line:?}", number + 1);
            let (id, at) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| bad("expected `<spiffe-id> <unix-seconds>`"))?;
            let id: SpiffeId = id.parse().map_err(|_| bad("not a SPIFFE id"))?;
            let at: i64 = at.trim().parse().map_err(|_| bad("not a Unix time"))?;
            // Revoked twice: the later time covers the earlier.
            let entry = revoked.entry(id.to_string()).or_insert(at);
            *entry = (*entry).max(at);
        }
        Ok(Revocations { revoked })
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut text = HEADER.to_string();
        for (id, at) in &self.revoked {
            text.push_str(&format!("{id} {at}\n"));
        }
        text
    }

    /// Revokes what was issued for `identity` up to `at` (Unix seconds).
    pub fn revoke(&mut self, identity: &SpiffeId, at: i64) {
        let entry = self.revoked.entry(identity.to_string()).or_insert(at);
        *entry = (*entry).max(at);
    }

    pub fn len(&self) -> usize {
        self.revoked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.revoked.is_empty()
    }

    /// Refuses a `what` ("certificate", "bootstrap token") for `identity` issued at
    /// `issued_at` (Unix seconds) if the identity was revoked then or later.
    pub fn check(
        &self,
        identity: &SpiffeId,
        issued_at: i64,
        what: &'static str,
    ) -> Result<(), Revoked> {
        match self.revoked.get(identity.as_str()) {
            Some(&revoked_at) if issued_at <= revoked_at => Err(Revoked {
                identity: identity.to_string(),
                revoked_at,
                issued_at,
                what,
            }),
            _ => Ok(()),
        }
    }

    /// The identities revoked here and not in `before` (or revoked later than there).
    pub fn newly_revoked<'a>(&'a self, before: &'a Revocations) -> impl Iterator<Item = &'a str> {
        self.revoked
            .iter()
            .filter(|(id, at)| before.revoked.get(*id).is_none_or(|was| was < *at))
            .map(|(id, _)| id.as_str())
    }
}

/// `outrigger revoke`: adds `identity`, revoked at `now`, to the data dir's file
/// (written atomically, so a running control plane never reads half of it).
pub fn revoke_in(data_dir: &Path, identity: &SpiffeId, now: i64) -> Result<(), String> {
    let mut revocations = Revocations::load(data_dir)?;
    revocations.revoke(identity, now);
    let path = revocations_path(data_dir);
    outrigger_certs::write_atomically(&path, revocations.render().as_bytes(), 0o644)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(short: &str) -> SpiffeId {
        SpiffeId::from_short("cluster.local", short).unwrap()
    }

    #[test]
    fn refuses_what_was_issued_up_to_the_revocation() {
        let mut r = Revocations::default();
        r.revoke(&id("shop/orders"), 1000);
        assert!(r.check(&id("shop/orders"), 999, "certificate").is_err());
        let err = r
            .check(&id("shop/orders"), 1000, "bootstrap token")
            .unwrap_err();
        assert_eq!(err.revoked_at, 1000);
        assert!(
            err.to_string()
                .contains("this bootstrap token was issued at 1000")
        );
        assert!(r.check(&id("shop/orders"), 1001, "certificate").is_ok());
        assert!(r.check(&id("shop/payments"), 0, "certificate").is_ok());
    }

    #[test]
    fn round_trips_and_names_bad_lines() {
        let mut r = Revocations::default();
        r.revoke(&id("shop/orders"), 1000);
        r.revoke(&id("shop/orders"), 900);
        r.revoke(&id("ops/tool"), 5);
        let text = r.render();
        assert!(text.contains("spiffe://cluster.local/ns/shop/sa/orders 1000\n"));
        assert_eq!(Revocations::parse(&text).unwrap(), r);
        let err = Revocations::parse("# c\n\nspiffe://cluster.local/ns/a/sa/b x\n").unwrap_err();
        assert!(err.starts_with("line 3: not a Unix time"), "{err}");
        assert!(
            Revocations::parse("orders 5\n")
                .unwrap_err()
                .contains("line 1")
        );
    }

    #[test]
    fn tells_what_is_newly_revoked() {
        let mut before = Revocations::default();
        before.revoke(&id("a/a"), 10);
        let mut after = before.clone();
        after.revoke(&id("b/b"), 20);
        after.revoke(&id("a/a"), 30);
        let mut new: Vec<&str> = after.newly_revoked(&before).collect();
        new.sort();
        assert_eq!(
            new,
            [
                "spiffe://cluster.local/ns/a/sa/a",
                "spiffe://cluster.local/ns/b/sa/b"
            ]
        );
        assert_eq!(before.newly_revoked(&before).count(), 0);
    }

    #[test]
    fn revoke_in_writes_the_file_a_load_reads() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(CaPaths::new(dir.path()).dir()).unwrap();
        assert!(Revocations::load(dir.path()).unwrap().is_empty());
        revoke_in(dir.path(), &id("shop/orders"), 77).unwrap();
        let loaded = Revocations::load(dir.path()).unwrap();
        assert!(loaded.check(&id("shop/orders"), 77, "certificate").is_err());
        assert_eq!(loaded.len(), 1);
    }
}
