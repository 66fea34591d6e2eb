//! Whether a sidecar's resources stayed flat: after the warm-up, every sample of each
//! quantity within [`TOLERANCE`] of the first sample after the warm-up. A leak (memory,
//! descriptors, tasks) shows as a drift past it; noise around a steady level does not.

use crate::sample::{Quantity, Sample};

/// How far a sample may stray from the level at the end of the warm-up.
pub(crate) const TOLERANCE: f64 = 0.10;

/// One quantity of one sidecar over the run.
pub(crate) struct Series {
    pub(crate) sidecar: &'static str,
    pub(crate) quantity: Quantity,
    /// At the end of the warm-up: the level the rest is held to.
    pub(crate) reference: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    pub(crate) last: f64,
}

impl Series {
    /// `samples` after the warm-up (the first is the reference); `None` if there are none.
    pub(crate) fn of(
        sidecar: &'static str,
        quantity: Quantity,
        samples: &[Sample],
    ) -> Option<Series> {
        let values: Vec<f64> = samples.iter().map(|s| quantity.of(s)).collect();
        let reference = *values.first()?;
        Some(Series {
            sidecar,
            quantity,
            reference,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            last: *values.last()?,
        })
    }

    /// The largest departure from the reference, as a share of it.
    pub(crate) fn deviation(&self) -> f64 {
        if self.reference == 0.0 {
            return if self.max == 0.0 { 0.0 } else { f64::INFINITY };
        }
        ((self.max - self.reference).max(self.reference - self.min)) / self.reference
    }

    pub(crate) fn flat(&self) -> bool {
        self.deviation() <= TOLERANCE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(rss_mib: &[u64]) -> Vec<Sample> {
        rss_mib
            .iter()
            .map(|m| Sample {
                rss: m * 1024 * 1024,
                ..Sample::default()
            })
            .collect()
    }

    #[test]
    fn a_steady_level_is_flat_and_a_drift_is_not() {
        let steady = Series::of("client", Quantity::Rss, &samples(&[10, 11, 10, 9, 10])).unwrap();
        assert!(steady.flat(), "{}", steady.deviation());
        assert_eq!((steady.min, steady.max, steady.last), (9.0, 11.0, 10.0));
        let drift = Series::of("client", Quantity::Rss, &samples(&[10, 10, 11, 12])).unwrap();
        assert!(!drift.flat());
        assert!((drift.deviation() - 0.2).abs() < 1e-9);
        assert!(Series::of("client", Quantity::Rss, &[]).is_none());
    }
}
