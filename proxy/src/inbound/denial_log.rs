//! The denial log: at most one line per (caller, reason) per 10 seconds. A caller the
//! ServerPolicy refuses usually keeps trying, and a formatted WARN per refused request
//! would flood the log (and the disk) with one line repeated. So the first denial of a
//! (caller, reason) is logged, the next ones within the period are only counted, and the
//! next line for it says how many were left out (`suppressed=N`).
//! `outrigger_authorization_denied_total` counts every denial.
//!
//! The keys held are capped: once that many are fresh, denials of new keys go unlogged
//! until a period passes, so the log never gets more than `MAX_KEYS` denial lines per
//! period, however many callers and paths a flood uses. Plaintext callers share one
//! caller key. Time is tokio's, so that this is tested with paused time.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// One line per (caller, reason) per this long.
pub(crate) const PERIOD: Duration = Duration::from_secs(10);
/// (caller, reason) keys held at most: the most denial lines one period can log.
pub(crate) const MAX_KEYS: usize = 256;

/// When each (caller, reason) was last logged, and what was left out since.
#[derive(Debug)]
pub(crate) struct DenialLog {
    period: Duration,
    max_keys: usize,
    // A std mutex: taken only on a denial, for a lookup and an update; never across an
    // await.
    slots: Mutex<HashMap<(String, String), Slot>>,
}

#[derive(Debug)]
struct Slot {
    logged_at: Instant,
    suppressed: u64,
}

impl Default for DenialLog {
    fn default() -> Self {
        DenialLog::new(PERIOD, MAX_KEYS)
    }
}

impl DenialLog {
    pub(crate) fn new(period: Duration, max_keys: usize) -> Self {
        DenialLog {
            period,
            max_keys,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Whether to log this denial of `caller` (its identity, or `None` when plaintext)
    /// for `reason`: `Some(n)`, with the denials of that key left out since its last
    /// line, or `None` to count it only.
    pub(crate) fn admit(&self, caller: Option<&str>, reason: &str) -> Option<u64> {
        let key = (caller.unwrap_or("").to_string(), reason.to_string());
        let now = Instant::now();
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = slots.get_mut(&key) {
            if now.duration_since(slot.logged_at) < self.period {
                slot.suppressed += 1;
                return None;
            }
            slot.logged_at = now;
            return Some(std::mem::take(&mut slot.suppressed));
        }
        if slots.len() >= self.max_keys {
            // A key whose period is over holds only a count; a new key may take its room.
            slots.retain(|_, slot| now.duration_since(slot.logged_at) < self.period);
            if slots.len() >= self.max_keys {
                return None;
            }
        }
        slots.insert(
            key,
            Slot {
                logged_at: now,
                suppressed: 0,
            },
        );
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVIL: Option<&str> = Some("spiffe://cluster.local/ns/shop/sa/evil");

    #[tokio::test(start_paused = true)]
    async fn one_line_per_caller_and_reason_per_period_then_the_count_left_out() {
        let log = DenialLog::default();
        assert_eq!(log.admit(EVIL, "no rule"), Some(0));
        for _ in 0..99 {
            assert_eq!(log.admit(EVIL, "no rule"), None);
        }
        // Another reason, another caller, a plaintext caller: lines of their own.
        assert_eq!(log.admit(EVIL, "method"), Some(0));
        assert_eq!(log.admit(Some("spiffe://x/ns/a/sa/b"), "no rule"), Some(0));
        assert_eq!(log.admit(None, "no rule"), Some(0));
        assert_eq!(log.admit(None, "no rule"), None);
        tokio::time::sleep(PERIOD - Duration::from_millis(1)).await;
        assert_eq!(log.admit(EVIL, "no rule"), None);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(log.admit(EVIL, "no rule"), Some(100));
        assert_eq!(log.admit(EVIL, "method"), Some(0));
        tokio::time::sleep(PERIOD * 3).await;
        assert_eq!(log.admit(EVIL, "no rule"), Some(0), "quiet since");
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_new_keys_logs_at_most_max_keys_lines_per_period() {
        let log = DenialLog::new(PERIOD, 3);
        let logged = (0..1000)
            .filter(|n| log.admit(EVIL, &format!("/path/{n}")).is_some())
            .count();
        assert_eq!(logged, 3);
        tokio::time::sleep(PERIOD).await;
        assert_eq!(log.admit(EVIL, "/path/new"), Some(0), "room once stale");
    }
}
