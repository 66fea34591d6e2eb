//! The retry budget: over a sliding window, retries may be at most `ratio` of the
//! requests plus `min_per_second` a second. When a service fails hard, its callers'
//! retries are capped at that extra load instead of multiplying it.

use std::time::Duration;

use tokio::time::Instant;

/// Slices of the window; the window slides one slice at a time.
const SLICES: usize = 10;

#[derive(Clone, Copy, Debug, Default)]
struct Slice {
    requests: u32,
    retries: u32,
}

#[derive(Debug)]
pub(crate) struct RetryBudget {
    ratio: f64,
    min_per_second: u32,
    window: Duration,
    slice: Duration,
    slices: [Slice; SLICES],
    /// Index of the current slice and when it started.
    current: usize,
    started: Instant,
}

impl RetryBudget {
    pub(crate) fn new(ratio: f64, min_per_second: u32, window: Duration, now: Instant) -> Self {
        let window = window.max(Duration::from_millis(SLICES as u64));
        RetryBudget {
            ratio: ratio.clamp(0.0, 1.0),
            min_per_second,
            window,
            slice: window / SLICES as u32,
            slices: [Slice::default(); SLICES],
            current: 0,
            started: now,
        }
    }

    /// Counts a request (its first try).
    pub(crate) fn record_request(&mut self, now: Instant) {
        self.roll(now);
        self.slices[self.current].requests += 1;
    }

    /// Takes a retry from the budget if there is one left.
    pub(crate) fn try_retry(&mut self, now: Instant) -> bool {
        self.roll(now);
        let (requests, retries) = self.slices.iter().fold((0u64, 0u64), |(q, r), s| {
            (q + u64::from(s.requests), r + u64::from(s.retries))
        });
        let allowed = self.ratio * requests as f64
            + f64::from(self.min_per_second) * self.window.as_secs_f64();
        if (retries as f64) < allowed {
            self.slices[self.current].retries += 1;
            true
        } else {
            false
        }
    }

    /// The share of the budget the retries of the window have used, 0 to 1.
    pub(crate) fn used(&mut self, now: Instant) -> f64 {
        self.roll(now);
        let (requests, retries) = self.slices.iter().fold((0u64, 0u64), |(q, r), s| {
            (q + u64::from(s.requests), r + u64::from(s.retries))
        });
        let allowed = self.ratio * requests as f64
            + f64::from(self.min_per_second) * self.window.as_secs_f64();
        if allowed <= 0.0 {
            return if retries > 0 { 1.0 } else { 0.0 };
        }
        (retries as f64 / allowed).min(1.0)
    }

    /// Moves to the slice `now` falls in, clearing the slices that slid out.
    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.started);
        let steps = (elapsed.as_nanos() / self.slice.as_nanos()) as usize;
        if steps == 0 {
            return;
        }
        for _ in 0..steps.min(SLICES) {
            self.current = (self.current + 1) % SLICES;
            self.slices[self.current] = Slice::default();
        }
        self.started += self.slice * steps as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Instant {
        Instant::now()
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_capped_at_ratio_plus_reserve() {
        // 20% of requests plus 1/s over 10s = 10 reserve retries.
        let mut budget = RetryBudget::new(0.2, 1, Duration::from_secs(10), now());
        for _ in 0..100 {
            budget.record_request(now());
        }
        assert_eq!(budget.used(now()), 0.0);
        let granted = (0..1000).filter(|_| budget.try_retry(now())).count();
        assert_eq!(granted, 20 + 10);
        assert_eq!(budget.used(now()), 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_slides() {
        let mut budget = RetryBudget::new(0.5, 0, Duration::from_secs(10), now());
        for _ in 0..10 {
            budget.record_request(now());
        }
        assert_eq!((0..100).filter(|_| budget.try_retry(now())).count(), 5);
        // Still within the window: nothing new.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(!budget.try_retry(now()));
        // The old requests and retries slid out: the budget is empty, not negative.
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(!budget.try_retry(now()));
        budget.record_request(now());
        budget.record_request(now());
        assert!(budget.try_retry(now()));
        assert!(!budget.try_retry(now()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_service_sees_a_bounded_amplification() {
        // 100 req/s for 60s, every request wants a retry: retries stay near 20% + 10/s.
        let mut budget = RetryBudget::new(0.2, 10, Duration::from_secs(10), now());
        let mut retries = 0u32;
        for _ in 0..6000 {
            budget.record_request(now());
            if budget.try_retry(now()) {
                retries += 1;
            }
            tokio::time::advance(Duration::from_millis(10)).await;
        }
        let per_second = f64::from(retries) / 60.0;
        assert!(
            (25.0..=35.0).contains(&per_second),
            "{per_second} retries/s for 100 req/s"
        );
    }
}
