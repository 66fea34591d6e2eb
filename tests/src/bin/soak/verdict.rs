//! Whether a sidecar's resources stayed flat after the warm-up. A quantity's level is the
//! median of its samples over a minute: a single sample of tasks or descriptors also
//! counts the requests and connections in flight at that instant, which come and go, while
//! a leak raises the level and keeps it up. Every minute's level must stay within
//! [`TOLERANCE`] of the first minute's after the warm-up.

use crate::sample::{Quantity, Sample};

/// How far a level may stray from the one at the end of the warm-up.
pub(crate) const TOLERANCE: f64 = 0.10;

/// One quantity of one sidecar over the run.
pub(crate) struct Series {
    pub(crate) sidecar: &'static str,
    pub(crate) quantity: Quantity,
    /// The first level after the warm-up: the one the rest is held to.
    pub(crate) reference: f64,
    /// The lowest, highest and last levels.
    pub(crate) low: f64,
    pub(crate) high: f64,
    pub(crate) last: f64,
    /// The extremes of single samples, for the record.
    pub(crate) sample_min: f64,
    pub(crate) sample_max: f64,
}

impl Series {
    /// `samples` after the warm-up, in windows of `per_level` samples (a last, partial
    /// window counts too); `None` if there are none.
    pub(crate) fn of(
        sidecar: &'static str,
        quantity: Quantity,
        samples: &[Sample],
        per_level: usize,
    ) -> Option<Series> {
        let values: Vec<f64> = samples.iter().map(|s| quantity.of(s)).collect();
        let levels: Vec<f64> = values.chunks(per_level.max(1)).map(median).collect();
        Some(Series {
            sidecar,
            quantity,
            reference: *levels.first()?,
            low: levels.iter().copied().fold(f64::INFINITY, f64::min),
            high: levels.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            last: *levels.last()?,
            sample_min: values.iter().copied().fold(f64::INFINITY, f64::min),
            sample_max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }

    /// The largest departure of a level from the reference, as a share of it.
    pub(crate) fn deviation(&self) -> f64 {
        if self.reference == 0.0 {
            return if self.high == 0.0 { 0.0 } else { f64::INFINITY };
        }
        ((self.high - self.reference).max(self.reference - self.low)) / self.reference
    }

    pub(crate) fn flat(&self) -> bool {
        self.deviation() <= TOLERANCE
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tasks(counts: &[u64]) -> Vec<Sample> {
        counts
            .iter()
            .map(|&tasks| Sample {
                tasks,
                ..Sample::default()
            })
            .collect()
    }

    #[test]
    fn spikes_of_requests_in_flight_are_not_a_drift_and_a_rising_level_is() {
        // Minute levels 20, 20, 20: one sample of 29 (requests in flight) is noise.
        let spiky = tasks(&[20, 21, 20, 20, 29, 20, 21, 20, 20]);
        let series = Series::of("client", Quantity::Tasks, &spiky, 3).unwrap();
        assert!(series.flat(), "{}", series.deviation());
        assert_eq!((series.sample_min, series.sample_max), (20.0, 29.0));
        // Levels 20, 22, 24: a leak of a task every few seconds.
        let rising = tasks(&[20, 20, 20, 22, 22, 22, 24, 24, 25]);
        let series = Series::of("client", Quantity::Tasks, &rising, 3).unwrap();
        assert!(!series.flat());
        assert!((series.deviation() - 0.2).abs() < 1e-9);
        assert_eq!((series.reference, series.last), (20.0, 24.0));
        assert!(Series::of("client", Quantity::Tasks, &[], 3).is_none());
    }
}
