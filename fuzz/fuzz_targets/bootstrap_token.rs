//! Bootstrap tokens as `POST /v1/certificates` receives them. Two doors: the bytes as a
//! token (what anyone can send: only a token this key signed may pass), and the bytes as
//! the claims of a token this key signed (what a leaked or buggy minting could produce),
//! so that mutations reach the claim parsing behind the signature check.

#![no_main]

use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use outrigger_control_plane::token::{TOKEN_KEY_LEN, TokenError, TokenKey};

/// The key the seeds were minted with (fuzz/examples/make_seeds.rs).
static KEY: LazyLock<TokenKey> =
    LazyLock::new(|| TokenKey::from_bytes(&[7u8; TOKEN_KEY_LEN], "cluster.local"));
static OTHER_KEY: LazyLock<TokenKey> =
    LazyLock::new(|| TokenKey::from_bytes(&[8u8; TOKEN_KEY_LEN], "cluster.local"));

/// A fixed "now", so that a run is reproducible: 2026-01-01.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check(text);
    // The same bytes as the claims of a token this key signed.
    let signed = format!("v1.{}", URL_SAFE_NO_PAD.encode(data));
    let tag = hmac_sha256(&signed);
    check(&format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag)));
});

fn check(token: &str) {
    let now_secs = now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    match KEY.verify(token, now()) {
        Ok(identity) => {
            assert_eq!(identity.trust_domain(), KEY.trust_domain());
            assert!(
                OTHER_KEY.verify(token, now()).is_err(),
                "a token verifies under one key only"
            );
            // What a token proves, a token minted for it proves again.
            let again = KEY.mint(&identity, now() + Duration::from_secs(60));
            assert_eq!(KEY.verify(&again, now()).expect("re-minted"), identity);
        }
        Err(TokenError::Expired {
            expired_at, ago, ..
        }) => assert_eq!(expired_at + ago, now_secs, "ago counts from now"),
        Err(_) => {}
    }
}

/// The signature a token of this key carries (HMAC-SHA256, as `token.rs` says). Made
/// here rather than by `TokenKey::mint`, which only signs well-formed claims.
fn hmac_sha256(message: &str) -> Vec<u8> {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &[7u8; TOKEN_KEY_LEN]);
    aws_lc_rs::hmac::sign(&key, message.as_bytes())
        .as_ref()
        .to_vec()
}
