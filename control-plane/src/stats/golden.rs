//! Golden metrics from merged counts: rate, success rate and latency percentiles, read
//! from one HDR histogram into which every window's buckets were added.

use hdrhistogram::Histogram;
use outrigger_api::Golden;

use super::ring::Counts;

/// The histograms the proxies keep: 1 µs to 100 s, 3 significant digits. Merging into
/// the same precision keeps every count in its bucket.
pub(crate) const LATENCY_MAX_MICROS: u64 = 100_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;

/// Adds windows up, then reads the golden metrics.
pub(crate) struct Accumulator {
    requests: u64,
    successes: u64,
    latency: Histogram<u64>,
}

impl Accumulator {
    pub(crate) fn new() -> Self {
        Accumulator {
            requests: 0,
            successes: 0,
            latency: Histogram::new_with_bounds(1, LATENCY_MAX_MICROS, SIGNIFICANT_DIGITS)
                .expect("static histogram bounds"),
        }
    }

    pub(crate) fn add(&mut self, counts: &Counts) {
        self.requests += counts.requests;
        self.successes += counts.successes;
        counts.latency.add_to(&mut self.latency);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.requests == 0 && self.latency.is_empty()
    }

    /// Over `secs` seconds of wall time.
    pub(crate) fn golden(&self, secs: f64) -> Golden {
        let h = &self.latency;
        let ms = |micros: u64| (!h.is_empty()).then(|| micros as f64 / 1000.0);
        Golden {
            requests: self.requests,
            successes: self.successes,
            rate: if secs > 0.0 {
                self.requests as f64 / secs
            } else {
                0.0
            },
            success_rate: (self.requests > 0)
                .then(|| self.successes.min(self.requests) as f64 / self.requests as f64),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::sparse::Sparse;
    use super::*;

    #[test]
    fn rates_and_percentiles() {
        let mut h = Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_MICROS, 3).unwrap();
        for micros in 1..=1000 {
            h.record(micros * 1000).unwrap();
        }
        let mut acc = Accumulator::new();
        assert!(acc.is_empty());
        assert_eq!(acc.golden(10.0).p50_ms, None);
        acc.add(&Counts {
            requests: 1000,
            successes: 990,
            latency: Sparse::of(&h),
        });
        let g = acc.golden(10.0);
        assert_eq!(g.rate, 100.0);
        assert_eq!(g.success_rate, Some(0.99));
        assert_eq!(g.p50_ms, Some(h.value_at_quantile(0.5) as f64 / 1000.0));
        assert!((499.0..=501.0).contains(&g.p50_ms.unwrap()), "{g:?}");
        assert!((999.0..=1001.0).contains(&g.max_ms.unwrap()), "{g:?}");
    }
}
