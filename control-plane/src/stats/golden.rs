//! Golden metrics from merged counts: rate, success rate and latency percentiles, read
//! straight from the merged sparse histogram. A percentile is found as HDR histograms
//! find it (the first bucket at which the running count reaches ⌈q × total⌉, reported as
//! that bucket's highest equivalent value), so the numbers are those a histogram holding
//! every merged call would give, without building one.

use outrigger_api::Golden;

use super::ring::Counts;
use super::sparse::Sparse;

/// The histograms the proxies keep: 1 µs to 100 s, 3 significant digits.
#[cfg(test)]
pub(crate) const LATENCY_MAX_MICROS: u64 = 100_000_000;

/// Adds windows up, then reads the golden metrics.
#[derive(Default)]
pub(crate) struct Accumulator {
    requests: u64,
    successes: u64,
    latency: Sparse,
}

impl Accumulator {
    pub(crate) fn add(&mut self, counts: &Counts) {
        self.requests += counts.requests;
        self.successes += counts.successes;
        self.latency = self.latency.merge(&counts.latency);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.requests == 0 && self.latency.iter().next().is_none()
    }

    /// Over `secs` seconds of wall time.
    pub(crate) fn golden(&self, secs: f64) -> Golden {
        let [p50, p90, p99, p999, max] = quantiles(&self.latency, [0.5, 0.9, 0.99, 0.999, 1.0])
            .map(|v| v.map(|micros| micros as f64 / 1000.0));
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
            p50_ms: p50,
            p90_ms: p90,
            p99_ms: p99,
            p999_ms: p999,
            max_ms: max,
        }
    }
}

impl From<&Counts> for Accumulator {
    fn from(counts: &Counts) -> Self {
        Accumulator {
            requests: counts.requests,
            successes: counts.successes,
            latency: counts.latency.clone(),
        }
    }
}

/// The values at quantiles `qs` (increasing, 0 < q ≤ 1), as `hdrhistogram` computes
/// them, in two passes over the pairs: one to count, one to find them all.
fn quantiles<const N: usize>(latency: &Sparse, qs: [f64; N]) -> [Option<u64>; N] {
    let total: u64 = latency.iter().map(|(_, n)| n).sum();
    let wanted = qs.map(|q| ((q.min(1.0) * total as f64).ceil() as u64).max(1));
    let mut found = [None; N];
    let mut next = 0;
    let mut seen = 0;
    for (value, count) in latency.iter() {
        seen += count;
        while next < N && seen >= wanted[next] {
            found[next] = Some(value);
            next += 1;
        }
        if next == N {
            break;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use hdrhistogram::Histogram;

    use super::*;

    #[test]
    fn rates_and_percentiles() {
        let mut h = Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_MICROS, 3).unwrap();
        for micros in 1..=1000 {
            h.record(micros * 1000).unwrap();
        }
        let mut acc = Accumulator::default();
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
        assert!((499.0..=501.0).contains(&g.p50_ms.unwrap()), "{g:?}");
        assert!((999.0..=1001.0).contains(&g.max_ms.unwrap()), "{g:?}");
    }

    /// Whatever the values, the merged percentiles are those of one histogram holding
    /// them all.
    #[test]
    fn percentiles_are_hdrhistogram_s() {
        let mut rng = fastrand::Rng::with_seed(7);
        for round in 0..200 {
            let mut union = Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_MICROS, 3).unwrap();
            let mut acc = Accumulator::default();
            for _ in 0..rng.usize(1..4) {
                let mut part = Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_MICROS, 3).unwrap();
                for _ in 0..rng.usize(1..300) {
                    let scale = 10u64.pow(rng.u32(0..8));
                    part.record(rng.u64(1..10 * scale).min(LATENCY_MAX_MICROS))
                        .unwrap();
                }
                union.add(&part).unwrap();
                acc.add(&Counts {
                    requests: part.len(),
                    successes: part.len(),
                    latency: Sparse::of(&part),
                });
            }
            let g = acc.golden(1.0);
            let ms = |v: u64| Some(v as f64 / 1000.0);
            assert_eq!(g.p50_ms, ms(union.value_at_quantile(0.5)), "round {round}");
            assert_eq!(g.p90_ms, ms(union.value_at_quantile(0.9)), "round {round}");
            assert_eq!(g.p99_ms, ms(union.value_at_quantile(0.99)), "round {round}");
            assert_eq!(
                g.p999_ms,
                ms(union.value_at_quantile(0.999)),
                "round {round}"
            );
            assert_eq!(g.max_ms, ms(union.max()), "round {round}");
        }
    }
}
