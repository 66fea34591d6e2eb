//! When a certificate is renewed, shared by the sidecars and the control plane's own
//! serving certificate: at 70% of the life left when it was received, so that 30% of
//! its life remains to retry in if the CA is unreachable.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The share of the remaining life after which a certificate is renewed.
pub const RENEW_AT: f64 = 0.7;

/// The shortest wait before a renewal. Without it, a certificate that is already expired
/// (or a CA that issues very short ones) would make the renewal loop spin.
pub const MIN_RENEW_WAIT: Duration = Duration::from_secs(1);

/// How long to wait before renewing a certificate that ends at `not_after`, both in Unix
/// seconds. Measured from `now`, not from `notBefore`: the CA backdates `notBefore` for
/// clock skew, which would make a short-lived certificate look mostly spent already.
pub fn renew_after(not_after: i64, now: i64) -> Duration {
    let remaining = Duration::from_secs(u64::try_from(not_after - now).unwrap_or(0));
    remaining.mul_f64(RENEW_AT).max(MIN_RENEW_WAIT)
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_at_seventy_percent_of_the_remaining_life_never_spinning() {
        assert_eq!(renew_after(1_100, 1_000), Duration::from_secs(70));
        assert_eq!(renew_after(1_010, 1_000), Duration::from_secs(7));
        assert_eq!(
            renew_after(1_000 + 86_400, 1_000),
            Duration::from_secs(60_480)
        );
        // Expiring now, or already expired: soon, but not in a tight loop.
        assert_eq!(renew_after(1_000, 1_000), MIN_RENEW_WAIT);
        assert_eq!(renew_after(900, 1_000), MIN_RENEW_WAIT);
    }
}
