//! Bootstrap tokens: how a sidecar proves its identity the first time, before it holds a
//! certificate. A token is `v1.<payload>.<signature>`: the payload is base64url (no
//! padding) JSON `{"sub": spiffe-id, "exp": unix-secs, "iat": unix-secs}`, the signature
//! is HMAC-SHA256 over `v1.<payload>` with the key in `<data-dir>/ca/token.key`.
//!
//! A token is a bearer secret bound to one identity: whoever holds it can get a
//! certificate for that identity until it expires. Keep the TTL short.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use outrigger_certs::{CaPaths, SpiffeId};
use serde::{Deserialize, Serialize};

/// Length of the signing key, in bytes (the HMAC-SHA256 block-size sweet spot).
pub const TOKEN_KEY_LEN: usize = 32;

const VERSION: &str = "v1";

/// Where the token signing key lives in a data dir.
pub fn token_key_path(data_dir: &Path) -> PathBuf {
    CaPaths::new(data_dir).dir().join("token.key")
}

/// Why a token was refused, or the key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("malformed bootstrap token: {0}")]
    Malformed(&'static str),
    #[error(
        "bootstrap token signature does not match (tampered, or signed by another control plane)"
    )]
    BadSignature,
    #[error("bootstrap token for {identity} expired {ago}s ago (at unix time {expired_at})")]
    Expired {
        identity: String,
        expired_at: u64,
        ago: u64,
    },
    #[error("bootstrap token identity {identity} is not in trust domain {trust_domain}")]
    WrongTrustDomain {
        identity: String,
        trust_domain: String,
    },
    #[error("cannot read bootstrap-token key {path}: {reason} (run `outrigger ca init`)")]
    Key { path: PathBuf, reason: String },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Claims {
    sub: String,
    exp: u64,
    iat: u64,
}

/// The key that signs and verifies bootstrap tokens, and the trust domain they belong to.
pub struct TokenKey {
    key: hmac::Key,
    trust_domain: String,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("TokenKey")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

impl TokenKey {
    /// Loads `<data-dir>/ca/token.key` and the CA's trust domain.
    pub fn load(data_dir: &Path) -> Result<TokenKey, TokenError> {
        let path = token_key_path(data_dir);
        let key_error = |path: &Path, reason: String| TokenError::Key {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(&path).map_err(|e| key_error(&path, e.to_string()))?;
        if bytes.len() != TOKEN_KEY_LEN {
            return Err(key_error(
                &path,
                format!("expected {TOKEN_KEY_LEN} bytes, found {}", bytes.len()),
            ));
        }
        let td_path = CaPaths::new(data_dir).trust_domain();
        let trust_domain = std::fs::read_to_string(&td_path)
            .map_err(|e| key_error(&td_path, e.to_string()))?
            .trim()
            .to_string();
        Ok(TokenKey::from_bytes(&bytes, &trust_domain))
    }

    /// A key from raw bytes (tests, and keys kept elsewhere than the data dir).
    pub fn from_bytes(key: &[u8], trust_domain: &str) -> TokenKey {
        TokenKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
            trust_domain: trust_domain.to_string(),
        }
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// A token for `identity`, valid until `expires_at`.
    pub fn mint(&self, identity: &SpiffeId, expires_at: SystemTime) -> String {
        let claims = Claims {
            sub: identity.to_string(),
            exp: unix_secs(expires_at),
            iat: unix_secs(SystemTime::now()),
        };
        // Serializing a struct of a string and two integers cannot fail.
        let json = serde_json::to_vec(&claims).unwrap_or_default();
        let signed = format!("{VERSION}.{}", URL_SAFE_NO_PAD.encode(json));
        let tag = hmac::sign(&self.key, signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The identity a token proves at `now`. The signature is checked (in constant time)
    /// before anything in the payload is believed.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<SpiffeId, TokenError> {
        self.verify_token(token, now)
            .map(|verified| verified.identity)
    }

    /// [`TokenKey::verify`], with when the token was minted (revocations compare it).
    pub fn verify_token(&self, token: &str, now: SystemTime) -> Result<VerifiedToken, TokenError> {
        let token = token.trim();
        let mut parts = token.split('.');
        let (Some(version), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed(
                "expected three dot-separated parts: v1.<payload>.<signature>",
            ));
        };
        if version != VERSION {
            return Err(TokenError::Malformed("unknown version (expected v1)"));
        }
        let tag = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Malformed("signature is not base64url"))?;
        let signed_len = version.len() + 1 + payload.len();
        hmac::verify(&self.key, &token.as_bytes()[..signed_len], &tag)
            .map_err(|_| TokenError::BadSignature)?;

        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed("payload is not base64url"))?;
        let claims: Claims = serde_json::from_slice(&json)
            .map_err(|_| TokenError::Malformed("payload is not {sub, exp, iat} JSON"))?;
        let identity: SpiffeId = claims
            .sub
            .parse()
            .map_err(|_| TokenError::Malformed("sub is not a SPIFFE id"))?;
        let now = unix_secs(now);
        if claims.exp <= now {
            return Err(TokenError::Expired {
                identity: identity.to_string(),
                expired_at: claims.exp,
                ago: now - claims.exp,
            });
        }
        if identity.trust_domain() != self.trust_domain {
            return Err(TokenError::WrongTrustDomain {
                identity: identity.to_string(),
                trust_domain: self.trust_domain.clone(),
            });
        }
        Ok(VerifiedToken {
            identity,
            issued_at: i64::try_from(claims.iat).unwrap_or(i64::MAX),
        })
    }
}

/// What a valid token proves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedToken {
    pub identity: SpiffeId,
    /// When it was minted (Unix seconds).
    pub issued_at: i64,
}

/// Makes a new random signing key.
pub fn generate_key() -> Result<[u8; TOKEN_KEY_LEN], aws_lc_rs::error::Unspecified> {
    let mut key = [0u8; TOKEN_KEY_LEN];
    aws_lc_rs::rand::fill(&mut key)?;
    Ok(key)
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn key() -> TokenKey {
        TokenKey::from_bytes(&[7u8; TOKEN_KEY_LEN], "cluster.local")
    }

    fn id(short: &str) -> SpiffeId {
        SpiffeId::from_short("cluster.local", short).unwrap()
    }

    #[test]
    fn roundtrip() {
        let token = key().mint(&id("shop/orders"), SystemTime::now() + HOUR);
        assert!(token.starts_with("v1."));
        assert_eq!(
            key().verify(&token, SystemTime::now()).unwrap(),
            id("shop/orders")
        );
    }

    #[test]
    fn expired_says_when() {
        let now = SystemTime::now();
        let token = key().mint(&id("shop/orders"), now - Duration::from_secs(90));
        let err = key().verify(&token, now).unwrap_err();
        assert!(matches!(err, TokenError::Expired { ago: 90, .. }), "{err}");
        assert!(err.to_string().contains("expired 90s ago"), "{err}");
    }

    #[test]
    fn tampered_payload_or_other_key_is_a_bad_signature() {
        let k = key();
        let token = k.mint(&id("shop/orders"), SystemTime::now() + HOUR);
        let parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"sub":"{}","exp":99999999999,"iat":0}}"#,
            id("shop/admin")
        ));
        let tampered = format!("v1.{forged}.{}", parts[2]);
        assert!(matches!(
            k.verify(&tampered, SystemTime::now()),
            Err(TokenError::BadSignature)
        ));
        let other = TokenKey::from_bytes(&[8u8; TOKEN_KEY_LEN], "cluster.local");
        assert!(matches!(
            other.verify(&token, SystemTime::now()),
            Err(TokenError::BadSignature)
        ));
    }

    #[test]
    fn malformed() {
        for bad in [
            "",
            "v1",
            "v1.a",
            "v1.a.b.c",
            "v2.a.b",
            "v1.a.!!!",
            "\u{e9}.\u{e9}.\u{e9}",
        ] {
            assert!(
                matches!(
                    key().verify(bad, SystemTime::now()),
                    Err(TokenError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn wrong_trust_domain() {
        let foreign = SpiffeId::workload("other.org", "shop", "orders").unwrap();
        let token = key().mint(&foreign, SystemTime::now() + HOUR);
        let err = key().verify(&token, SystemTime::now()).unwrap_err();
        assert!(matches!(err, TokenError::WrongTrustDomain { .. }), "{err}");
    }

    #[test]
    fn load_names_the_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = TokenKey::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("token.key"), "{err}");
        assert!(err.contains("outrigger ca init"), "{err}");
    }
}
