//! Exponential backoff with full jitter: each wait is uniform in [0, min(max, base·2ⁿ)],
//! so that many proxies retrying the same control plane spread out instead of
//! synchronising.

use std::time::Duration;

#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    pub(crate) fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max,
            attempt: 0,
            rng: fastrand::Rng::new(),
        }
    }

    /// Same sequence every time, for tests.
    #[cfg(test)]
    pub(crate) fn seeded(base: Duration, max: Duration, seed: u64) -> Self {
        Backoff {
            rng: fastrand::Rng::with_seed(seed),
            ..Self::new(base, max)
        }
    }

    /// The ceiling of the next wait, before jitter.
    pub(crate) fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The next wait; each call doubles the ceiling, up to `max`.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.rng.u64(0..=nanos))
    }

    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::seeded(Duration::from_millis(100), Duration::from_secs(1), 7);
        let ceilings: Vec<_> = (0..6)
            .map(|_| {
                let c = b.ceiling();
                let d = b.next_delay();
                assert!(d <= c, "jittered delay within its ceiling");
                c.as_millis()
            })
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }

    #[test]
    fn jitter_spreads_waits() {
        let mut b = Backoff::seeded(Duration::from_secs(1), Duration::from_secs(1), 1);
        let waits: std::collections::HashSet<_> = (0..20).map(|_| b.next_delay()).collect();
        assert!(waits.len() > 10, "full jitter, not a fixed wait");
    }
}
