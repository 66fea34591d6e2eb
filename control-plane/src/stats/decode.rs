//! A shipped series, from its wire form (base64 of an HDR V2 histogram) to [`Counts`].

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use outrigger_api::SeriesReport;

use super::ring::Counts;
use super::sparse::Sparse;

/// A V2 histogram of 1 µs to 100 s at 3 digits, every bucket set, is about 50 KiB; twice
/// that and a bit of base64 is as much as one series may take.
const MAX_LATENCY_BYTES: usize = 160 * 1024;

pub(crate) fn decode_series(series: &SeriesReport) -> Result<Counts, String> {
    if series.latency.len() > MAX_LATENCY_BYTES {
        return Err(format!(
            "{}: latency histogram larger than {MAX_LATENCY_BYTES} bytes",
            series.service
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&series.latency)
        .map_err(|e| format!("{}: latency is not base64: {e}", series.service))?;
    let histogram: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| {
            format!(
                "{}: latency is not an HDR V2 histogram: {e:?}",
                series.service
            )
        })?;
    Ok(Counts {
        requests: series.requests,
        successes: series.successes.min(series.requests),
        latency: Sparse::of(&histogram),
    })
}
