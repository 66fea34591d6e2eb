//! The circuit breaker of one endpoint, as a pure state machine: closed → open (ejected)
//! → half-open (one probe) → closed. It trips on a run of consecutive failures, or on a
//! failure rate over a sliding window once enough requests were seen. Each ejection lasts
//! `base × times ejected`, capped at `max`; the count starts over once the endpoint has
//! stayed healthy for `max`. Whether a trip is enforced (the max-ejected-percent cap) is
//! decided by the caller, which then calls [`Breaker::eject`] or [`Breaker::decline`].

use std::time::Duration;

use tokio::time::Instant;

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FailureRate {
    pub threshold: f64,
    pub min_requests: u32,
    pub window: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BreakerConfig {
    pub consecutive_failures: Option<u32>,
    pub failure_rate: Option<FailureRate>,
    pub base_ejection: Duration,
    pub max_ejection: Duration,
}

impl Default for BreakerConfig {
    /// DESIGN.md's defaults: 5 consecutive failures, 30s base ejection, at most 5m.
    fn default() -> Self {
        BreakerConfig {
            consecutive_failures: Some(5),
            failure_rate: None,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum State {
    Closed,
    Open { until: Instant },
    HalfOpen,
}

/// Why a breaker wants to open.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Trip {
    ConsecutiveFailures(u32),
    FailureRate { rate: f64, requests: u32 },
    ProbeFailed,
}

impl std::fmt::Display for Trip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trip::ConsecutiveFailures(n) => write!(f, "{n} consecutive failures"),
            Trip::FailureRate { rate, requests } => {
                write!(
                    f,
                    "failure rate {:.0}% over {requests} requests",
                    rate * 100.0
                )
            }
            Trip::ProbeFailed => f.write_str("the half-open probe failed"),
        }
    }
}

const SLICES: usize = 10;

/// Whether one more endpoint may be ejected when `ejected` of `total` already are: only
/// while the ejected share is below `max_percent` (so one of one may go, one of two at
/// 50%, never a second of two).
pub(crate) fn may_eject(ejected: usize, total: usize, max_percent: u32) -> bool {
    (ejected as u64) * 100 < u64::from(max_percent.min(100)) * total as u64
}

#[derive(Debug)]
pub(crate) struct Breaker {
    config: BreakerConfig,
    state: State,
    consecutive: u32,
    ejections: u32,
    closed_since: Instant,
    /// (successes, failures) per slice of the failure-rate window.
    slices: [(u32, u32); SLICES],
    current: usize,
    slice_started: Instant,
}

impl Breaker {
    pub(crate) fn new(config: BreakerConfig, now: Instant) -> Self {
        Breaker {
            config,
            state: State::Closed,
            consecutive: 0,
            ejections: 0,
            closed_since: now,
            slices: [(0, 0); SLICES],
            current: 0,
            slice_started: now,
        }
    }

    pub(crate) fn state(&self) -> State {
        self.state
    }

    pub(crate) fn ejections(&self) -> u32 {
        self.ejections
    }

    /// Consecutive failures seen while closed.
    pub(crate) fn consecutive_failures(&self) -> u32 {
        self.consecutive
    }

    /// Records one request's outcome; returns why the breaker should open, if it should.
    pub(crate) fn record(&mut self, success: bool, now: Instant) -> Option<Trip> {
        match self.state {
            // Answers to requests sent before the ejection say nothing new.
            State::Open { .. } => None,
            State::HalfOpen if success => {
                self.close(now);
                None
            }
            State::HalfOpen => Some(Trip::ProbeFailed),
            State::Closed => {
                self.roll(now);
                let slice = &mut self.slices[self.current];
                if success {
                    slice.0 += 1;
                    self.consecutive = 0;
                    return None;
                }
                slice.1 += 1;
                self.consecutive += 1;
                if self
                    .config
                    .consecutive_failures
                    .is_some_and(|limit| self.consecutive >= limit.max(1))
                {
                    return Some(Trip::ConsecutiveFailures(self.consecutive));
                }
                let rate = self.config.failure_rate.as_ref()?;
                let (ok, failed) = self
                    .slices
                    .iter()
                    .fold((0, 0), |(a, b), (s, f)| (a + s, b + f));
                let requests = ok + failed;
                let observed = f64::from(failed) / f64::from(requests.max(1));
                (requests >= rate.min_requests && observed >= rate.threshold).then_some(
                    Trip::FailureRate {
                        rate: observed,
                        requests,
                    },
                )
            }
        }
    }

    /// Opens the breaker; returns until when. Each ejection lasts longer than the last.
    pub(crate) fn eject(&mut self, now: Instant) -> Instant {
        if self.state == State::Closed
            && now.saturating_duration_since(self.closed_since) >= self.config.max_ejection
        {
            // Healthy for a long while: this is a first offence again.
            self.ejections = 0;
        }
        self.ejections += 1;
        let length = self
            .config
            .base_ejection
            .saturating_mul(self.ejections)
            .min(self.config.max_ejection);
        let until = now + length;
        self.state = State::Open { until };
        self.reset_counts(now);
        until
    }

    /// A trip that the max-ejected cap refused: start counting afresh, stay closed.
    pub(crate) fn decline(&mut self, now: Instant) {
        if self.state == State::HalfOpen {
            // A failed probe that cannot be re-ejected: let traffic decide again.
            self.close(now);
        }
        self.reset_counts(now);
    }

    /// Moves an expired ejection to half-open; returns whether it did.
    pub(crate) fn tick(&mut self, now: Instant) -> bool {
        match self.state {
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen;
                true
            }
            _ => false,
        }
    }

    fn close(&mut self, now: Instant) {
        self.state = State::Closed;
        self.closed_since = now;
        self.reset_counts(now);
    }

    fn reset_counts(&mut self, now: Instant) {
        self.consecutive = 0;
        self.slices = [(0, 0); SLICES];
        self.slice_started = now;
    }

    fn roll(&mut self, now: Instant) {
        let Some(rate) = &self.config.failure_rate else {
            return;
        };
        let slice = (rate.window / SLICES as u32).max(Duration::from_millis(1));
        let steps = (now.saturating_duration_since(self.slice_started).as_nanos()
            / slice.as_nanos()) as usize;
        for _ in 0..steps.min(SLICES) {
            self.current = (self.current + 1) % SLICES;
            self.slices[self.current] = (0, 0);
        }
        if steps > 0 {
            self.slice_started += slice * steps as u32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Instant {
        Instant::now()
    }

    fn config() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: Some(3),
            failure_rate: None,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(25),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_and_probes_half_open() {
        let mut b = Breaker::new(config(), now());
        assert_eq!(b.record(false, now()), None);
        assert_eq!(b.record(true, now()), None, "a success breaks the run");
        assert_eq!(b.record(false, now()), None);
        assert_eq!(b.record(false, now()), None);
        assert_eq!(b.record(false, now()), Some(Trip::ConsecutiveFailures(3)));
        let until = b.eject(now());
        assert_eq!(until - now(), Duration::from_secs(10));
        assert!(matches!(b.state(), State::Open { .. }));
        assert_eq!(
            b.record(false, now()),
            None,
            "late answers are ignored while open"
        );

        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!b.tick(now()));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(b.tick(now()));
        assert_eq!(b.state(), State::HalfOpen);
        assert_eq!(b.record(true, now()), None);
        assert_eq!(b.state(), State::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn ejections_grow_to_the_cap_and_reset_after_a_healthy_spell() {
        let mut b = Breaker::new(config(), now());
        let mut lengths = Vec::new();
        for _ in 0..4 {
            let until = b.eject(now());
            lengths.push((until - now()).as_secs());
            tokio::time::advance(until - now()).await;
            assert!(b.tick(now()));
            // The probe fails: ejected again, longer.
            assert_eq!(b.record(false, now()), Some(Trip::ProbeFailed));
        }
        assert_eq!(lengths, [10, 20, 25, 25]);
        // Recovered, and healthy for longer than max: the next ejection is short again.
        let until = b.eject(now());
        tokio::time::advance(until - now()).await;
        b.tick(now());
        assert_eq!(b.record(true, now()), None);
        tokio::time::advance(Duration::from_secs(30)).await;
        let until = b.eject(now());
        assert_eq!((until - now()).as_secs(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn failure_rate_needs_enough_requests_in_the_window() {
        let mut b = Breaker::new(
            BreakerConfig {
                consecutive_failures: None,
                failure_rate: Some(FailureRate {
                    threshold: 0.5,
                    min_requests: 10,
                    window: Duration::from_secs(10),
                }),
                ..config()
            },
            now(),
        );
        // Alternating: 50% failures, but the trip waits for 10 requests.
        let mut trips = Vec::new();
        for i in 0..10 {
            trips.push(b.record(i % 2 == 1, now()));
        }
        assert!(trips[..9].iter().all(Option::is_none));
        assert_eq!(trips[9], None, "the 10th was a success");
        assert!(matches!(
            b.record(false, now()),
            Some(Trip::FailureRate { requests: 11, .. })
        ));

        // Old failures slide out of the window.
        b.decline(now());
        for _ in 0..4 {
            b.record(false, now());
        }
        tokio::time::advance(Duration::from_secs(11)).await;
        for _ in 0..9 {
            assert_eq!(b.record(true, now()), None);
        }
        assert_eq!(b.record(false, now()), None, "1 failure in 10 is below 50%");
    }

    #[test]
    fn the_ejection_cap_follows_the_share_already_ejected() {
        assert!(may_eject(0, 1, 50));
        assert!(may_eject(0, 2, 50));
        assert!(!may_eject(1, 2, 50));
        assert!(may_eject(4, 10, 50));
        assert!(!may_eject(5, 10, 50));
        assert!(!may_eject(0, 10, 0));
        assert!(may_eject(9, 10, 100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_declined_trip_counts_afresh() {
        let mut b = Breaker::new(config(), now());
        for _ in 0..2 {
            b.record(false, now());
        }
        assert!(b.record(false, now()).is_some());
        b.decline(now());
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.record(false, now()), None, "needs a new run of 3");
    }
}
