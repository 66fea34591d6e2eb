//! Latency and resilience statistics: what sidecars ship to the control plane
//! (`POST /v1/stats`, every 10 s) and the golden metrics it serves (`GET /api/stats`,
//! `GET /api/stats/timeline`). docs/observability.md describes both.

use serde::{Deserialize, Serialize};

/// Which sidecar of a call measured it: the caller's (outbound) or the callee's (inbound).
/// Every call through the mesh is measured twice; the two sides are never added together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Client,
    Server,
}

/// One interval of one sidecar's measurements (`POST /v1/stats`, mTLS).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatsReport {
    pub proxy_id: String,
    #[serde(default)]
    pub series: Vec<SeriesReport>,
    /// Resilience state of the services this sidecar calls.
    #[serde(default)]
    pub resilience: Vec<ResilienceReport>,
}

/// The calls of one side of one caller→callee edge during the interval (a delta).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SeriesReport {
    pub side: Side,
    /// The service called, `name.namespace`.
    pub service: String,
    /// Server side: the caller's verified SPIFFE id (absent for a plaintext caller).
    /// Client side: ignored; the caller is whoever presented the client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    pub requests: u64,
    /// Answers that are neither a 5xx, nor a mesh error, nor a gRPC failure.
    pub successes: u64,
    /// HDR histogram of the latencies in microseconds, V2-serialized, base64 (standard).
    pub latency: String,
}

/// How one sidecar's calls to one service are held back, at the end of the interval.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResilienceReport {
    /// `name.namespace`.
    pub service: String,
    /// Retries sent during the interval.
    pub retries: u64,
    /// Retries refused by the retry budget during the interval.
    pub budget_exhausted: u64,
    /// Requests refused by the bulkhead during the interval.
    pub bulkhead_rejected: u64,
    /// Share of the retry budget in use now, 0 to 1.
    pub retry_budget_used: f64,
    pub bulkhead_in_flight: u32,
    pub bulkhead_limit: u32,
    pub bulkhead_pending: u32,
    pub circuits: Vec<CircuitView>,
}

/// One endpoint's breaker as its caller's sidecar sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitView {
    pub endpoint: String,
    /// `closed`, `open` or `half-open`.
    pub state: String,
}

/// The answer to `POST /v1/stats`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatsAccepted {
    /// Series stored (the others were refused: the control plane's cap on series).
    pub accepted: usize,
}

/// Request rate, success rate and latency over a window; latencies in milliseconds,
/// `None` when nothing was measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Golden {
    pub requests: u64,
    pub successes: u64,
    /// Requests per second over the window.
    pub rate: f64,
    pub success_rate: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

/// `GET /api/stats?window=1m|5m|15m`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MeshStats {
    /// The window asked for, as given (`1m`).
    pub window: String,
    /// Seconds of data the numbers cover (less than the window just after a start).
    pub covered_secs: f64,
    pub services: Vec<ServiceStats>,
    pub edges: Vec<EdgeStats>,
    pub resilience: Vec<ResilienceStats>,
    /// Series refused since start because the control plane holds as many as it may.
    pub refused_series: u64,
    /// Windows dropped before their 15 minutes were up, to stay within the control
    /// plane's memory budget for statistics (`--stats-max-mib`).
    #[serde(default)]
    pub trimmed_windows: u64,
}

/// One service, all its callers: each call counted once (see [`EdgeStats::side`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceStats {
    pub service: String,
    #[serde(flatten)]
    pub golden: Golden,
}

/// One caller→callee edge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EdgeStats {
    /// The caller's identity, `namespace/service-account`, or `unauthenticated`.
    pub caller: String,
    pub service: String,
    /// The side whose numbers these are: the caller's sidecar when it reported in the
    /// window (it also sees the mesh's own failures), else the callee's.
    pub side: Side,
    #[serde(flatten)]
    pub golden: Golden,
}

/// One sidecar's resilience state for one service it calls (its last report); counts
/// are summed over the window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResilienceStats {
    pub proxy_id: String,
    /// The calling sidecar's identity, `namespace/service-account`.
    pub caller: String,
    #[serde(flatten)]
    pub report: ResilienceReport,
}

/// `GET /api/stats/timeline`: each service's golden metrics per window, oldest first.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Timeline {
    pub window_secs: f64,
    /// Unix time (ms) at which the first point's window starts.
    pub start_unix_ms: u64,
    pub services: Vec<ServiceTimeline>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ServiceTimeline {
    pub service: String,
    /// One per window; `None` where nothing was measured.
    pub points: Vec<Option<Golden>>,
}
