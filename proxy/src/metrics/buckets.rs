//! A Prometheus histogram of fixed buckets kept in atomics: recording is a few relaxed
//! increments, with no lock (prometheus-client's own histogram takes a lock per
//! observation). Exact percentiles come from the HDR histograms beside it; these buckets
//! are what Prometheus and Grafana aggregate.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Bounds of `request_duration_seconds`, in seconds. They start at 50 µs: a mesh hop
/// costs about 0.1 ms, so coarser buckets would hide exactly what a sidecar adds.
pub(crate) const REQUEST_BOUNDS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0,
];

/// Bounds of `tcp_connection_duration_seconds`: connections live from milliseconds (a
/// request) to hours (a database pool).
pub(crate) const CONNECTION_BOUNDS: &[f64] =
    &[0.01, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 1800.0, 3600.0];

/// Cheap to clone: clones share the counts.
#[derive(Clone, Debug)]
pub(crate) struct Buckets(Arc<Counts>);

#[derive(Debug)]
struct Counts {
    bounds: &'static [f64],
    /// Per bucket, not cumulative; the last one is above every bound.
    counts: Box<[AtomicU64]>,
    sum_micros: AtomicU64,
}

impl Buckets {
    pub(crate) fn new(bounds: &'static [f64]) -> Self {
        Buckets(Arc::new(Counts {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }))
    }

    pub(crate) fn requests() -> Self {
        Self::new(REQUEST_BOUNDS)
    }

    pub(crate) fn connections() -> Self {
        Self::new(CONNECTION_BOUNDS)
    }

    pub(crate) fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let slot = self.0.bounds.partition_point(|bound| *bound < seconds);
        self.0.counts[slot].fetch_add(1, Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.0.sum_micros.fetch_add(micros, Relaxed);
    }
}

impl TypedMetric for Buckets {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Buckets {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        // The encoder takes each bucket's own count and accumulates them itself.
        let mut count = 0;
        let mut buckets = Vec::with_capacity(self.0.counts.len());
        for (i, in_bucket) in self.0.counts.iter().enumerate() {
            let in_bucket = in_bucket.load(Relaxed);
            count += in_bucket;
            let bound = self.0.bounds.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, in_bucket));
        }
        let sum = self.0.sum_micros.load(Relaxed) as f64 / 1e6;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_observation_counts_in_the_first_bucket_whose_bound_holds_it() {
        let buckets = Buckets::requests();
        buckets.observe(Duration::from_micros(50));
        buckets.observe(Duration::from_micros(51));
        buckets.observe(Duration::from_secs(31));
        let counts: Vec<u64> = buckets.0.counts.iter().map(|c| c.load(Relaxed)).collect();
        assert_eq!(counts[0], 1, "50 µs is within le=0.00005");
        assert_eq!(counts[1], 1);
        assert_eq!(counts[REQUEST_BOUNDS.len()], 1, "above every bound: +Inf");
        assert_eq!(buckets.0.sum_micros.load(Relaxed), 31_000_101);
    }
}
