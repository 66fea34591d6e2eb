//! What the requests of one period of an open-loop run came to: how many were sent,
//! succeeded and were slow, the failures by cause (with an example of each), and the
//! latency of the successes.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::get::Outcome;

/// A success slower than this is counted as slow: a request that waited on a hung
/// instance or a timeout rather than on the load.
pub const SLOW: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct Tally {
    pub label: String,
    pub sent: u64,
    pub ok: u64,
    /// Successes that took longer than [`SLOW`].
    pub slow: u64,
    /// Failed requests by [`Outcome::cause`].
    pub failures: BTreeMap<String, u64>,
    /// The first error text seen for each cause that has one.
    pub examples: BTreeMap<String, String>,
    /// Latency of the successes in microseconds, from each request's due time.
    pub latency: Histogram<u64>,
}

impl Tally {
    pub fn new(label: &str) -> Tally {
        Tally {
            label: label.to_string(),
            sent: 0,
            ok: 0,
            slow: 0,
            failures: BTreeMap::new(),
            examples: BTreeMap::new(),
            // Up to 10 minutes, 3 significant digits.
            latency: Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds"),
        }
    }

    pub fn record(&mut self, outcome: &Outcome, latency: Duration) {
        self.sent += 1;
        if outcome.is_ok() {
            self.ok += 1;
            if latency > SLOW {
                self.slow += 1;
            }
            self.latency
                .saturating_record(latency.as_micros().max(1) as u64);
            return;
        }
        let cause = outcome.cause();
        if let Some(detail) = outcome.detail() {
            self.examples
                .entry(cause.clone())
                .or_insert_with(|| detail.to_string());
        }
        *self.failures.entry(cause).or_insert(0) += 1;
    }

    /// Requests that did not end in a whole 200.
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    /// Failures of one cause.
    pub fn failed_by(&self, cause: &str) -> u64 {
        self.failures.get(cause).copied().unwrap_or(0)
    }

    /// A latency percentile of the successes, in milliseconds (0 when there were none).
    pub fn percentile_ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// The slowest success, in milliseconds.
    pub fn max_ms(&self) -> f64 {
        self.latency.max() as f64 / 1000.0
    }

    /// Adds `other`'s counts to these (the label stays).
    pub fn absorb(&mut self, other: &Tally) {
        self.sent += other.sent;
        self.ok += other.ok;
        self.slow += other.slow;
        for (cause, n) in &other.failures {
            *self.failures.entry(cause.clone()).or_insert(0) += n;
        }
        for (cause, example) in &other.examples {
            self.examples
                .entry(cause.clone())
                .or_insert_with(|| example.clone());
        }
        self.latency.add(&other.latency).expect("same bounds");
    }

    /// The failures as `cause ×n` pairs, or `none`.
    pub fn causes(&self) -> String {
        if self.failures.is_empty() {
            return "none".to_string();
        }
        self.failures
            .iter()
            .map(|(cause, n)| format!("{cause} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_successes_slow_ones_and_failures_by_cause() {
        let mut tally = Tally::new("t");
        let ok = Outcome::Answered {
            status: 200,
            mesh_error: None,
        };
        tally.record(&ok, Duration::from_millis(2));
        tally.record(&ok, Duration::from_secs(3));
        let app = Outcome::Answered {
            status: 503,
            mesh_error: None,
        };
        tally.record(&app, Duration::from_millis(1));
        tally.record(&app, Duration::from_millis(1));
        let cut = Outcome::Truncated {
            status: 200,
            error: "connection reset".into(),
        };
        tally.record(&cut, Duration::from_millis(1));
        assert_eq!(
            (tally.sent, tally.ok, tally.slow, tally.failed()),
            (5, 2, 1, 3)
        );
        assert_eq!(tally.failed_by("503 (app)"), 2);
        assert_eq!(tally.failed_by("truncated 200"), 1);
        assert_eq!(tally.examples["truncated 200"], "connection reset");
        assert_eq!(tally.causes(), "503 (app) ×2, truncated 200 ×1");

        let mut sum = Tally::new("sum");
        sum.absorb(&tally);
        sum.absorb(&tally);
        assert_eq!((sum.sent, sum.failed_by("503 (app)")), (10, 4));
    }
}
