//! Golden metrics of the mesh: the sidecars' latency histograms and counts, merged per
//! caller→callee edge and per service into 10 s windows over the last 15 minutes
//! (`POST /v1/stats` in, `GET /api/stats` and `/api/stats/timeline` out).

mod decode;
mod golden;
mod ring;
mod sparse;
mod store;
mod views;

pub use ring::WINDOWS;
pub use store::{StatsStore, UNAUTHENTICATED};

use std::time::Duration;

/// How long one window lasts, unless configured otherwise.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);
/// Series (side, caller, callee) held at most: 2 sides of 2,048 edges.
pub const DEFAULT_MAX_SERIES: usize = 4096;
/// Heap held by the windows at most; above it the oldest windows go first.
pub const DEFAULT_MAX_BYTES: usize = 256 << 20;

/// `1m`, `5m` or `15m` as a number of windows of `window`.
pub fn windows_in(name: &str, window: Duration) -> Option<u64> {
    let span = match name {
        "1m" => Duration::from_secs(60),
        "5m" => Duration::from_secs(300),
        "15m" => Duration::from_secs(900),
        _ => return None,
    };
    Some((span.as_millis() / window.as_millis().max(1)).clamp(1, u128::from(WINDOWS)) as u64)
}

#[cfg(test)]
mod tests;
