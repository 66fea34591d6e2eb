//! The proxy's metrics. Handles are resolved once per service (when the outbound side
//! builds a service's runtime state), so a request only touches atomics and one
//! uncontended histogram lock; the Prometheus text is produced at scrape time. A
//! service's series live as long as its runtime state: an idle service's are dropped
//! with it, so the page follows what the app calls, not the size of the mesh.

pub(crate) mod edges;
pub(crate) mod snapshot;
mod status;
mod tcp;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use hdrhistogram::Histogram;

use self::status::{STATUS_SLOTS, slot_label, status_slot};
use crate::error::ErrorCode;
use crate::grpc_status::GrpcCounts;
use crate::resilience::counters::ResilienceCounters;

/// The longest latency a histogram tells apart: 100 s (longer ones count as 100 s). With
/// 3 significant digits and 32-bit counts, a histogram is about 70 KiB; to an hour with
/// 64-bit counts it was 190 KiB, for every service called.
const LATENCY_MAX_MICROS: u64 = 100_000_000;

/// Bucket bounds of `request_duration_seconds`, in seconds.
/// They start at 50 µs: a mesh hop costs about 0.1 ms, so coarser buckets would hide
/// exactly what a sidecar adds.
const BUCKETS: [f64; 18] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0,
];
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// Request metrics of one (direction, service).
pub(crate) struct ServiceMetrics {
    direction: Direction,
    service: String,
    /// Upstream responses by [`status_slot`]: no map, no lock.
    statuses: [AtomicU64; STATUS_SLOTS],
    /// Responses the proxy made, by [`ErrorCode::index`].
    errors: [AtomicU64; ErrorCode::ALL.len()],
    /// Microseconds, 1µs to 100 s at 3 significant digits: exact enough to merge across sidecars.
    latency: Mutex<Histogram<u32>>,
    inflight: AtomicI64,
    /// Retries, budget, bulkhead and breaker counters (outbound services).
    pub resilience: ResilienceCounters,
    /// gRPC answers by `grpc-status` (shared with the bodies that report them).
    pub grpc: Arc<GrpcCounts>,
    /// Opaque TCP connections.
    pub tcp: tcp::TcpCounters,
}

impl ServiceMetrics {
    fn new(direction: Direction, service: &str) -> Self {
        ServiceMetrics {
            direction,
            service: service.to_string(),
            statuses: std::array::from_fn(|_| AtomicU64::new(0)),
            errors: std::array::from_fn(|_| AtomicU64::new(0)),
            latency: Mutex::new(
                Histogram::new_with_bounds(1, LATENCY_MAX_MICROS, 3)
                    .expect("static histogram bounds"),
            ),
            inflight: AtomicI64::new(0),
            resilience: ResilienceCounters::default(),
            grpc: Arc::default(),
            tcp: tcp::TcpCounters::default(),
        }
    }

    pub(crate) fn service(&self) -> &str {
        &self.service
    }

    /// Counts a request as in flight until the guard drops.
    pub(crate) fn start(self: &Arc<Self>) -> InflightGuard {
        self.inflight.fetch_add(1, Relaxed);
        InflightGuard(self.clone())
    }

    /// Records the upstream's answer.
    pub(crate) fn record_status(&self, status: u16, elapsed: Duration) {
        if let Some(slot) = status_slot(status) {
            self.statuses[slot].fetch_add(1, Relaxed);
        }
        self.record_latency(elapsed);
    }

    /// Records a response the proxy made itself.
    pub(crate) fn record_error(&self, code: ErrorCode, elapsed: Duration) {
        self.errors[code.index()].fetch_add(1, Relaxed);
        self.record_latency(elapsed);
    }

    fn record_latency(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        if let Ok(mut histogram) = self.latency.lock() {
            histogram.saturating_record(micros);
        }
    }
}

/// Decrements the in-flight gauge when the request ends, however it ends.
pub(crate) struct InflightGuard(Arc<ServiceMetrics>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Relaxed);
    }
}

/// Everything the proxy counts. Created once at start and handed down.
#[derive(Default)]
pub(crate) struct ProxyMetrics {
    /// Held by their users (a target, the inbound side); gone when they are.
    services: Mutex<Vec<Weak<ServiceMetrics>>>,
    pub tls_handshakes_ok: AtomicU64,
    pub tls_handshakes_failed: AtomicU64,
    pub certificate_expiry: AtomicI64,
    pub config_version: AtomicU64,
    /// Connections whose client said too little to detect a protocol in time.
    pub detect_timeouts: AtomicU64,
    /// Redirected connections to a destination outside the mesh, passed through.
    pub egress_connections: AtomicU64,
}

impl ProxyMetrics {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The handle for (direction, service), made if no one holds one. Called when
    /// targets are built, not per request. The series are rendered for as long as the
    /// caller keeps the handle.
    pub(crate) fn service(&self, direction: Direction, service: &str) -> Arc<ServiceMetrics> {
        let mut services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        services.retain(|m| m.strong_count() > 0);
        if let Some(found) = services
            .iter()
            .filter_map(Weak::upgrade)
            .find(|m| m.direction == direction && m.service == service)
        {
            return found;
        }
        let created = Arc::new(ServiceMetrics::new(direction, service));
        services.push(Arc::downgrade(&created));
        created
    }

    /// Prometheus text exposition format 0.0.4.
    pub(crate) fn render(&self) -> String {
        let services: Vec<Arc<ServiceMetrics>> = self
            .services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        let mut out = String::with_capacity(4096);
        render_requests(&mut out, &services);
        render_latency(&mut out, &services);
        render_grpc(&mut out, &services);
        crate::resilience::counters::render(
            &mut out,
            services
                .iter()
                .filter(|m| m.direction == Direction::Outbound && m.service != "unknown")
                .map(|m| (m.service.as_str(), &m.resilience)),
        );
        header(
            &mut out,
            "inflight_requests",
            "gauge",
            "Requests in flight.",
        );
        for m in &services {
            let _ = writeln!(
                out,
                "outrigger_inflight_requests{{direction=\"{}\",service=\"{}\"}} {}",
                m.direction.as_str(),
                escape(&m.service),
                m.inflight.load(Relaxed)
            );
        }
        tcp::render(&mut out, &services);
        header(
            &mut out,
            "protocol_detect_timeouts_total",
            "counter",
            "Connections treated as opaque TCP because detection timed out.",
        );
        let _ = writeln!(
            out,
            "outrigger_protocol_detect_timeouts_total {}",
            self.detect_timeouts.load(Relaxed)
        );
        header(
            &mut out,
            "egress_connections_total",
            "counter",
            "Redirected connections to destinations outside the mesh, passed through as plain TCP.",
        );
        let _ = writeln!(
            out,
            "outrigger_egress_connections_total {}",
            self.egress_connections.load(Relaxed)
        );
        header(
            &mut out,
            "tls_handshakes_total",
            "counter",
            "mTLS handshakes with peers, by result.",
        );
        let _ = writeln!(
            out,
            "outrigger_tls_handshakes_total{{result=\"ok\"}} {}",
            self.tls_handshakes_ok.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "outrigger_tls_handshakes_total{{result=\"error\"}} {}",
            self.tls_handshakes_failed.load(Relaxed)
        );
        header(
            &mut out,
            "certificate_expiry_timestamp_seconds",
            "gauge",
            "When the current workload certificate expires (Unix time).",
        );
        let _ = writeln!(
            out,
            "outrigger_certificate_expiry_timestamp_seconds {}",
            self.certificate_expiry.load(Relaxed)
        );
        header(
            &mut out,
            "config_version",
            "gauge",
            "Version of the configuration applied.",
        );
        let _ = writeln!(
            out,
            "outrigger_config_version {}",
            self.config_version.load(Relaxed)
        );
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP outrigger_{name} {help}");
    let _ = writeln!(out, "# TYPE outrigger_{name} {kind}");
}

fn render_requests(out: &mut String, services: &[Arc<ServiceMetrics>]) {
    header(
        out,
        "requests_total",
        "counter",
        "Requests answered, by status and mesh error.",
    );
    for m in services {
        let (dir, svc) = (m.direction.as_str(), escape(&m.service));
        for (slot, count) in m.statuses.iter().enumerate() {
            let count = count.load(Relaxed);
            if count > 0 {
                let code = slot_label(slot);
                let _ = writeln!(
                    out,
                    "outrigger_requests_total{{direction=\"{dir}\",service=\"{svc}\",status_code=\"{code}\",error=\"\"}} {count}"
                );
            }
        }
        for code in ErrorCode::ALL {
            let count = m.errors[code.index()].load(Relaxed);
            if count > 0 {
                let _ = writeln!(
                    out,
                    "outrigger_requests_total{{direction=\"{dir}\",service=\"{svc}\",status_code=\"{}\",error=\"{}\"}} {count}",
                    code.status().as_u16(),
                    code.as_str()
                );
            }
        }
    }
}

fn render_grpc(out: &mut String, services: &[Arc<ServiceMetrics>]) {
    header(
        out,
        "grpc_responses_total",
        "counter",
        "gRPC answers of the app or upstream, by grpc-status (a 200 may carry a failure).",
    );
    for m in services {
        let (dir, svc) = (m.direction.as_str(), escape(&m.service));
        for (status, count) in m.grpc.counts() {
            let _ = writeln!(
                out,
                "outrigger_grpc_responses_total{{direction=\"{dir}\",service=\"{svc}\",grpc_status=\"{status}\"}} {count}"
            );
        }
    }
}

fn render_latency(out: &mut String, services: &[Arc<ServiceMetrics>]) {
    header(
        out,
        "request_duration_seconds",
        "histogram",
        "Time to the response's headers, as seen by this proxy.",
    );
    for m in services {
        let (dir, svc) = (m.direction.as_str(), escape(&m.service));
        // Copy out under the lock, format outside it.
        let Ok(histogram) = m.latency.lock().map(|h| h.clone()) else {
            continue;
        };
        let labels = format!("direction=\"{dir}\",service=\"{svc}\"");
        for bound in BUCKETS {
            let count = histogram.count_between(0, (bound * 1e6) as u64);
            let _ = writeln!(
                out,
                "outrigger_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}"
            );
        }
        let total = histogram.len();
        let sum = histogram.mean() * total as f64 / 1e6;
        let _ = writeln!(
            out,
            "outrigger_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {total}"
        );
        let _ = writeln!(
            out,
            "outrigger_request_duration_seconds_sum{{{labels}}} {sum}"
        );
        let _ = writeln!(
            out,
            "outrigger_request_duration_seconds_count{{{labels}}} {total}"
        );
    }
}

/// Label values are escaped per the exposition format.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_errors_and_buckets() {
        let registry = ProxyMetrics::new();
        let m = registry.service(Direction::Outbound, "payments.shop");
        assert!(Arc::ptr_eq(
            &m,
            &registry.service(Direction::Outbound, "payments.shop")
        ));
        m.record_status(200, Duration::from_micros(700));
        m.record_status(200, Duration::from_millis(3));
        m.record_error(ErrorCode::NoEndpoints, Duration::from_micros(10));
        m.record_status(299, Duration::from_micros(10));
        let text = registry.render();
        assert!(text.contains(
            "outrigger_requests_total{direction=\"outbound\",service=\"payments.shop\",status_code=\"200\",error=\"\"} 2"
        ));
        assert!(text.contains("status_code=\"503\",error=\"no-endpoints\"} 1"));
        assert!(text.contains("le=\"0.001\"} 3"), "{text}");
        assert!(text.contains("le=\"+Inf\"} 4"));
        assert!(text.contains("status_code=\"2xx\",error=\"\"} 1"), "{text}");
    }

    #[test]
    fn a_service_whose_handle_is_dropped_leaves_the_page() {
        let registry = ProxyMetrics::new();
        let kept = registry.service(Direction::Outbound, "kept.shop");
        let gone = registry.service(Direction::Outbound, "gone.shop");
        kept.record_status(200, Duration::from_micros(100));
        gone.record_status(200, Duration::from_micros(100));
        drop(gone);
        let text = registry.render();
        assert!(text.contains("kept.shop"));
        assert!(!text.contains("gone.shop"), "{text}");
    }

    #[test]
    fn inflight_guard_decrements() {
        let registry = ProxyMetrics::new();
        let m = registry.service(Direction::Inbound, "a");
        let guard = m.start();
        assert_eq!(m.inflight.load(Relaxed), 1);
        drop(guard);
        assert_eq!(m.inflight.load(Relaxed), 0);
    }
}
