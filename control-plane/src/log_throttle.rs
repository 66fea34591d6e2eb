//! At most one log line per key per period. A hostile or broken client can make the
//! control plane refuse thousands of requests a second; one warning each would fill the
//! disk and bury everything else. So each refusal line is keyed (endpoint, reason, who),
//! the first of a period is written, the rest are counted, and the next line written for
//! that key says how many were left out. The metrics count every refusal; the log is the
//! sample that says who and why.
//!
//! The keys held are capped: once that many are fresh, lines for new keys are dropped
//! until a period passes, so the log never gets more than `max_keys` lines per period.
//! Time is tokio's, so that this can be tested with paused time.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// One period per key.
#[derive(Debug)]
pub struct LogThrottle<K> {
    period: Duration,
    max_keys: usize,
    // A std mutex: held for a lookup and an update, never across an await.
    slots: Mutex<HashMap<K, Slot>>,
}

#[derive(Debug)]
struct Slot {
    logged_at: Instant,
    suppressed: u64,
}

impl<K: Eq + Hash> LogThrottle<K> {
    pub fn new(period: Duration, max_keys: usize) -> Self {
        LogThrottle {
            period,
            max_keys,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Whether to write a line for `key` now: `Some(n)`, with the lines left out for it
    /// since the last one written, or `None` to leave this one out.
    pub fn admit(&self, key: K) -> Option<u64> {
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
            // Keys whose period is over hold only a count; a new key may take their room.
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

    const PERIOD: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn one_line_per_key_per_period_with_the_count_left_out() {
        let throttle = LogThrottle::new(PERIOD, 100);
        assert_eq!(throttle.admit("a"), Some(0));
        for _ in 0..5 {
            assert_eq!(throttle.admit("a"), None);
        }
        assert_eq!(throttle.admit("b"), Some(0), "keys are apart");
        tokio::time::sleep(PERIOD - Duration::from_millis(1)).await;
        assert_eq!(throttle.admit("a"), None);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(throttle.admit("a"), Some(6));
        assert_eq!(throttle.admit("a"), None);
        tokio::time::sleep(PERIOD).await;
        assert_eq!(throttle.admit("a"), Some(1));
        assert_eq!(throttle.admit("b"), Some(0));
    }

    #[tokio::test(start_paused = true)]
    async fn new_keys_beyond_the_cap_wait_for_a_period() {
        let throttle = LogThrottle::new(PERIOD, 2);
        assert_eq!(throttle.admit(1), Some(0));
        assert_eq!(throttle.admit(2), Some(0));
        assert_eq!(throttle.admit(3), None, "two fresh keys held");
        assert_eq!(throttle.admit(1), None);
        tokio::time::sleep(PERIOD).await;
        assert_eq!(throttle.admit(3), Some(0), "stale keys made room");
        assert_eq!(throttle.admit(4), Some(0));
        assert_eq!(throttle.admit(5), None);
    }
}
