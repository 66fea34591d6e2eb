//! The load of one endpoint, as the balancers see it: requests in flight and a peak-EWMA
//! estimate of its round-trip time (Finagle's and linkerd's "peak EWMA"). The estimate
//! jumps up to a slower sample at once and decays towards faster ones with a time
//! constant of [`DECAY`], so an endpoint that turns slow is avoided at once and one that
//! recovers wins its traffic back gradually. An endpoint that holds requests without
//! answering any (a hung process) is priced at least by how long it has done so: its
//! estimate alone would decay while it answers nothing, and win it requests back.
//!
//! Everything is atomics: the balancer reads two endpoints' loads on every pick, and
//! responses from many connections update them concurrently. The estimate (`f64` bits) and
//! the time of its last update are two atomics rather than one locked pair because readers
//! must never wait; a reader that sees a new time with the old estimate (or the reverse)
//! misjudges one pick by a fraction of a decay step, which is harmless. Writers claim
//! their stretch of elapsed time with `fetch_max` on the stamp, so two concurrent samples
//! never both count the same interval, and fold their sample in with a CAS loop, so none
//! is lost.

use std::sync::atomic::{
    AtomicBool, AtomicU32, AtomicU64, Ordering::AcqRel, Ordering::Acquire, Ordering::Release,
};
use std::time::Duration;

use tokio::time::Instant;

/// Time constant of the decay towards faster samples (as Finagle and linkerd use).
pub(super) const DECAY: Duration = Duration::from_secs(10);

/// What an endpoint is assumed to take before it has answered once: moderate, so that a
/// new endpoint is neither flooded nor starved while its first request is in flight.
pub(super) const DEFAULT_RTT: Duration = Duration::from_millis(30);

pub(crate) struct Load {
    /// Times are kept as nanoseconds since this instant (the endpoint's creation).
    epoch: Instant,
    /// The RTT estimate in nanoseconds, as `f64` bits.
    estimate: AtomicU64,
    /// When `estimate` was last updated, in nanoseconds since `epoch`.
    stamp: AtomicU64,
    /// Whether a real sample has replaced [`DEFAULT_RTT`].
    sampled: AtomicBool,
    in_flight: AtomicU32,
    /// When requests were last taken on with none in flight, in nanoseconds since `epoch`.
    busy_since: AtomicU64,
}

impl Load {
    /// A fresh endpoint's load; `now` is its creation time.
    pub(crate) fn new(now: Instant) -> Self {
        Load {
            epoch: now,
            estimate: AtomicU64::new(nanos(DEFAULT_RTT).to_bits()),
            stamp: AtomicU64::new(0),
            sampled: AtomicBool::new(false),
            in_flight: AtomicU32::new(0),
            busy_since: AtomicU64::new(0),
        }
    }

    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Acquire)
    }

    /// The RTT estimate at `now`, in nanoseconds: the last one, decayed towards zero for
    /// the time since it was updated, so that an endpoint left alone after a slow spell
    /// is tried again eventually instead of never.
    pub(crate) fn estimate(&self, now: Instant) -> f64 {
        let estimate = f64::from_bits(self.estimate.load(Acquire));
        let elapsed = self
            .since_epoch(now)
            .saturating_sub(self.stamp.load(Acquire));
        estimate * decay(elapsed)
    }

    /// Peak-EWMA cost: the estimate scaled by the requests already waiting on it. An
    /// endpoint that has never answered and is idle costs nothing, so it gets one request
    /// at once (Finagle's probe); while that one is in flight, [`DEFAULT_RTT`] prices it.
    pub(crate) fn cost(&self, now: Instant) -> f64 {
        let in_flight = self.in_flight();
        if in_flight == 0 && !self.sampled.load(Acquire) {
            return 0.0;
        }
        let mut estimate = self.estimate(now);
        if in_flight > 0 {
            // Busy, and no answer, since the later of these two: a request has waited
            // that long, so the endpoint is at least that slow however far its estimate
            // has decayed. On an endpoint that answers, this is next to nothing.
            let since = self.busy_since.load(Acquire).max(self.stamp.load(Acquire));
            let waited = self.since_epoch(now).saturating_sub(since) as f64;
            estimate = estimate.max(waited);
        }
        estimate * f64::from(in_flight.saturating_add(1))
    }

    /// Counts a request as in flight until the returned guard is finished or dropped.
    pub(crate) fn start(&self, now: Instant) -> InFlight<'_> {
        if self.in_flight.fetch_add(1, AcqRel) == 0 {
            // A race with the last request leaving can misdate a busy spell by that
            // request's length: one pick misjudged, as with the estimate.
            self.busy_since.store(self.since_epoch(now), Release);
        }
        InFlight {
            load: self,
            sent: now,
            finished: false,
        }
    }

    /// Folds in a sample: `answered` when the response headers arrived. A failure, or a
    /// request abandoned by its caller, tells nothing about speed except that it took at
    /// least this long: it may raise the estimate, never lower it (else an endpoint that
    /// refuses connections at once would look like the fastest one).
    fn observe(&self, rtt: Duration, now: Instant, answered: bool) {
        let rtt = nanos(rtt);
        let now = self.since_epoch(now);
        if !answered {
            let raised = self
                .estimate
                .fetch_update(AcqRel, Acquire, |bits| {
                    (rtt > f64::from_bits(bits)).then_some(rtt.to_bits())
                })
                .is_ok();
            if raised {
                self.stamp.fetch_max(now, AcqRel);
            }
            return;
        }
        let previous = self.stamp.fetch_max(now, AcqRel);
        if !self.sampled.swap(true, AcqRel) {
            // The first answer replaces the default outright.
            self.estimate
                .store(rtt.to_bits(), std::sync::atomic::Ordering::Release);
            return;
        }
        let decay = decay(now.saturating_sub(previous));
        let _ = self.estimate.fetch_update(AcqRel, Acquire, |bits| {
            let estimate = f64::from_bits(bits);
            let next = if rtt > estimate {
                rtt
            } else {
                estimate * decay + rtt * (1.0 - decay)
            };
            Some(next.to_bits())
        });
    }

    fn since_epoch(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A request in flight on an endpoint.
pub(crate) struct InFlight<'a> {
    load: &'a Load,
    sent: Instant,
    finished: bool,
}

impl InFlight<'_> {
    /// The request leaves now, on a ready connection: the latency sample starts here, so
    /// that connecting (a handshake on a cold endpoint) is not taken for slowness. It is
    /// in flight from the pick, so that requests waiting on a connect are counted.
    pub(crate) fn dispatched(&mut self, now: Instant) {
        self.sent = now;
    }

    /// The request ended at `now`; `answered` when the response headers arrived (that is
    /// the latency sample), false when it failed.
    pub(crate) fn finish(mut self, answered: bool, now: Instant) {
        self.finished = true;
        self.load
            .observe(now.saturating_duration_since(self.sent), now, answered);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.finished {
            // Abandoned (the caller went away): it took at least this long.
            let now = Instant::now();
            self.load
                .observe(now.saturating_duration_since(self.sent), now, false);
        }
        self.load.in_flight.fetch_sub(1, AcqRel);
    }
}

/// The weight an estimate keeps after `elapsed` nanoseconds.
fn decay(elapsed: u64) -> f64 {
    (-(elapsed as f64) / nanos(DECAY)).exp()
}

fn nanos(d: Duration) -> f64 {
    d.as_nanos() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: f64 = 1e6;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Sends one request at `at` that answers after `rtt`.
    fn sample(load: &Load, at: Instant, rtt: Duration) {
        load.start(at).finish(true, at + rtt);
    }

    #[test]
    fn a_new_idle_endpoint_is_free_until_its_first_answer() {
        let t0 = Instant::now();
        let load = Load::new(t0);
        assert_eq!(load.cost(t0), 0.0);
        let pending = load.start(t0);
        // While the probe is in flight, the default prices it.
        assert!((load.cost(t0) - 2.0 * 30.0 * MS).abs() < 1.0);
        pending.finish(true, t0 + ms(2));
        assert!((load.estimate(t0 + ms(2)) - 2.0 * MS).abs() < 1.0);
        assert_eq!(load.in_flight(), 0);
    }

    #[test]
    fn jumps_up_at_once_and_decays_towards_faster_samples() {
        let t0 = Instant::now();
        let load = Load::new(t0);
        sample(&load, t0, ms(5));
        sample(&load, t0 + ms(100), ms(50));
        let peak = load.estimate(t0 + ms(150));
        assert!((peak - 50.0 * MS).abs() < 1.0, "{peak}");

        // Fast answers pull it down over about the decay time, not at once.
        let mut at = t0 + ms(150);
        for _ in 0..10 {
            at += ms(100);
            sample(&load, at, ms(5));
        }
        let after_1s = load.estimate(at);
        assert!(after_1s < 50.0 * MS && after_1s > 40.0 * MS, "{after_1s}");
        for _ in 0..300 {
            at += ms(100);
            sample(&load, at, ms(5));
        }
        let after_31s = load.estimate(at);
        assert!(after_31s < 8.0 * MS, "{after_31s}");
    }

    #[test]
    fn an_idle_estimate_decays_so_the_endpoint_is_retried() {
        let t0 = Instant::now();
        let load = Load::new(t0);
        sample(&load, t0, ms(100));
        let later = t0 + ms(100) + DECAY * 3;
        assert!(load.estimate(later) < 100.0 * MS * 0.06);
    }

    #[test]
    fn failures_only_ever_raise_the_estimate() {
        let t0 = Instant::now();
        let load = Load::new(t0);
        sample(&load, t0, ms(20));
        // A connection refused after 1ms: not a fast answer.
        load.start(t0 + ms(30)).finish(false, t0 + ms(31));
        assert!((load.estimate(t0 + ms(31)) - 20.0 * MS).abs() < 0.1 * MS);
        // A failure after 200ms: at least that slow.
        load.start(t0 + ms(40)).finish(false, t0 + ms(240));
        assert!((load.estimate(t0 + ms(240)) - 200.0 * MS).abs() < 1.0);
    }

    #[test]
    fn connecting_is_not_part_of_the_sample() {
        let t0 = Instant::now();
        let load = Load::new(t0);
        let mut request = load.start(t0);
        request.dispatched(t0 + ms(40));
        request.finish(true, t0 + ms(42));
        assert!((load.estimate(t0 + ms(42)) - 2.0 * MS).abs() < 1.0);
    }

    #[test]
    fn a_request_that_never_answers_prices_the_endpoint_by_how_long_it_has_waited() {
        let t0 = Instant::now();
        let (hung, healthy) = (Load::new(t0), Load::new(t0));
        sample(&hung, t0, ms(2));
        sample(&healthy, t0, ms(2));
        let _held = hung.start(t0 + ms(10));
        // 30 s on: the healthy endpoint answered all along, the hung one held its request.
        let mut at = t0 + ms(10);
        for _ in 0..300 {
            at += ms(100);
            sample(&healthy, at, ms(2));
        }
        assert!(
            hung.estimate(at) < 0.2 * MS,
            "the estimate alone has decayed"
        );
        let cost = hung.cost(at);
        assert!(cost >= 2.0 * 29_000.0 * MS, "priced by the wait: {cost}");
        assert!(healthy.cost(at) < 3.0 * MS);
        // An endpoint busy and answering is priced by its estimate, as before.
        let answering = Load::new(t0);
        let _long = answering.start(t0);
        sample(&answering, t0 + ms(990), ms(10));
        let cost = answering.cost(t0 + ms(1000));
        assert!(cost < 2.0 * 20.0 * MS, "{cost}");
    }

    #[test]
    fn cost_grows_with_requests_in_flight() {
        let t0 = Instant::now();
        let load = Load::new(t0);
        sample(&load, t0, ms(10));
        let now = t0 + ms(10);
        let one = load.cost(now);
        let a = load.start(now);
        let b = load.start(now);
        assert_eq!(load.in_flight(), 2);
        assert!((load.cost(now) - 3.0 * one).abs() < 1.0);
        drop(a);
        drop(b);
        assert_eq!(load.in_flight(), 0);
    }
}
