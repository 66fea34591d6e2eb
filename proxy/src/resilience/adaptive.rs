//! An adaptive concurrency limit (AIMD) for the inbound side: the limit grows by one while
//! the app answers as fast as its best recent latency allows and the limit is actually
//! used, and shrinks by a tenth when latency passes `tolerance ×` that baseline or the app
//! fails. A saturated app is so kept near its knee instead of being pushed past it.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct AimdLimit {
    limit: f64,
    min: f64,
    max: f64,
    tolerance: f64,
    /// The lowest latency seen in the current and the previous baseline window.
    baseline: [Duration; 2],
    window: Duration,
    window_started: Instant,
}

impl AimdLimit {
    pub(crate) fn new(initial: u32, min: u32, max: u32, now: Instant) -> Self {
        AimdLimit {
            limit: f64::from(initial.clamp(min, max)),
            min: f64::from(min.max(1)),
            max: f64::from(max.max(min.max(1))),
            tolerance: 2.0,
            baseline: [Duration::MAX; 2],
            window: Duration::from_secs(30),
            window_started: now,
        }
    }

    pub(crate) fn limit(&self) -> u32 {
        self.limit as u32
    }

    /// Records one request: its latency, whether the app failed, and how many requests
    /// were in flight when it started.
    pub(crate) fn record(&mut self, latency: Duration, failed: bool, in_flight: u32, now: Instant) {
        if now.saturating_duration_since(self.window_started) >= self.window {
            self.baseline = [Duration::MAX, self.baseline[0]];
            self.window_started = now;
        }
        if !failed {
            self.baseline[0] = self.baseline[0].min(latency);
        }
        let baseline = self.baseline[0].min(self.baseline[1]);
        let slow = baseline != Duration::MAX
            && latency.as_secs_f64() > baseline.as_secs_f64() * self.tolerance;
        if failed || slow {
            self.limit = (self.limit * 0.9).max(self.min);
        } else if f64::from(in_flight) * 2.0 >= self.limit {
            // Only grow a limit that is being used.
            self.limit = (self.limit + 1.0).min(self.max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn grows_while_fast_and_used_shrinks_when_slow() {
        let now = Instant::now();
        let mut limit = AimdLimit::new(10, 1, 100, now);
        let fast = Duration::from_millis(10);
        for _ in 0..20 {
            limit.record(fast, false, limit.limit(), now);
        }
        assert_eq!(limit.limit(), 30);
        // Unused headroom does not grow.
        limit.record(fast, false, 1, now);
        assert_eq!(limit.limit(), 30);
        // Latency past twice the baseline: multiplicative decrease.
        limit.record(Duration::from_millis(50), false, 30, now);
        assert_eq!(limit.limit(), 27);
        limit.record(fast, true, 30, now);
        assert_eq!(limit.limit(), 24);
    }

    #[tokio::test(start_paused = true)]
    async fn settles_below_a_saturated_apps_knee() {
        // A simulated app: 10ms while at most 8 requests are in flight, then queueing
        // makes latency grow with every request beyond.
        let mut limit = AimdLimit::new(4, 1, 1000, Instant::now());
        for _ in 0..2000 {
            let in_flight = limit.limit();
            let latency = Duration::from_millis(10 + 10 * u64::from(in_flight.saturating_sub(8)));
            limit.record(latency, false, in_flight, Instant::now());
            tokio::time::advance(Duration::from_millis(5)).await;
        }
        assert!(
            (7..=10).contains(&limit.limit()),
            "limit {} near the knee of 8",
            limit.limit()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn respects_its_bounds() {
        let mut limit = AimdLimit::new(5, 2, 6, Instant::now());
        for _ in 0..10 {
            limit.record(Duration::from_millis(1), true, 5, Instant::now());
        }
        assert_eq!(limit.limit(), 2);
        for _ in 0..10 {
            limit.record(Duration::from_millis(1), false, 6, Instant::now());
        }
        assert_eq!(limit.limit(), 6);
    }
}
