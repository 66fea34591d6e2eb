//! The proxy's metrics, encoded with `prometheus-client`. Every family is registered once
//! at start (`families.rs`) with a typed label set (`labels.rs`). Handles are resolved
//! once per service (when the outbound side builds a service's runtime state, or once for
//! the inbound side), once per caller (per connection) and once per named route: a
//! request then touches only atomics, and the one HDR histogram lock it shares with the
//! stats reporter. A service's series live as long as its handle: an idle service's are
//! taken off the page with it, so the page follows what the app calls, not the size of
//! the mesh.

mod buckets;
mod denials;
mod families;
pub(crate) mod labels;
pub(crate) mod snapshot;
mod status;
mod tcp;

use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use hdrhistogram::Histogram;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use self::buckets::Buckets;
pub(crate) use self::denials::{DenialCounts, Denied};
use self::families::Families;
pub(crate) use self::labels::Direction;
use self::labels::{
    DestinationLabels, EdgeLabels, EjectionLabels, RefusalLabels, ResponseLabels, ResultLabels,
    ServiceLabels,
};
use self::status::{STATUS_SLOTS, slot_label, status_slot};
use crate::error::ErrorCode;
use crate::grpc_status::GrpcCounts;
use crate::resilience::circuit::CircuitMetrics;
use crate::resilience::counters::ResilienceCounters;

/// The longest latency a histogram tells apart: 100 s (longer ones count as 100 s). With
/// 3 significant digits and 32-bit counts, a histogram is about 70 KiB; to an hour with
/// 64-bit counts it was 190 KiB, for every service called.
const LATENCY_MAX_MICROS: u64 = 100_000_000;

/// The handles of the live services, by labels: compared without upgrading, so that no
/// handle can be dropped (and take this lock in its `Drop`) while it is held.
type Live = Mutex<Vec<(ServiceLabels, Weak<ServiceMetrics>)>>;

/// What the handles share with the registry.
#[derive(Debug)]
struct Shared {
    families: Families,
    live: Live,
}

/// Everything the proxy counts. Created once at start and handed down.
pub(crate) struct ProxyMetrics {
    registry: Registry,
    shared: Arc<Shared>,
    pub tls_handshakes_ok: Counter,
    pub tls_handshakes_failed: Counter,
    pub certificate_expiry: Gauge,
    pub config_version: Gauge,
    /// Connections whose client said too little to detect a protocol in time.
    pub detect_timeouts: Counter,
    /// Redirected connections to a destination outside the mesh, passed through.
    pub egress_connections: Counter,
    /// Tasks alive in the proxy's runtime, read at each scrape ([`Self::sample_runtime`]).
    alive_tasks: Gauge,
}

impl ProxyMetrics {
    pub(crate) fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("outrigger");
        let families = Families::register(&mut registry);
        let result = |result| ResultLabels { result };
        let tls_handshakes_ok = families.tls_handshakes.get_or_create_owned(&result("ok"));
        let tls_handshakes_failed = families
            .tls_handshakes
            .get_or_create_owned(&result("error"));
        let (detect_timeouts, egress_connections) = (Counter::default(), Counter::default());
        let (certificate_expiry, config_version) = (Gauge::default(), Gauge::default());
        let alive_tasks = Gauge::default();
        registry.register(
            "protocol_detect_timeouts",
            "Connections treated as opaque TCP because detection timed out",
            detect_timeouts.clone(),
        );
        registry.register(
            "egress_connections",
            "Redirected connections to destinations outside the mesh, passed through as plain TCP",
            egress_connections.clone(),
        );
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "When the current workload certificate expires (Unix time)",
            certificate_expiry.clone(),
        );
        registry.register(
            "config_version",
            "Version of the configuration applied",
            config_version.clone(),
        );
        registry.register(
            "runtime_alive_tasks",
            "Tasks alive in the proxy's runtime: connections, streams and background loops",
            alive_tasks.clone(),
        );
        Arc::new(ProxyMetrics {
            registry,
            shared: Arc::new(Shared {
                families,
                live: Mutex::default(),
            }),
            tls_handshakes_ok,
            tls_handshakes_failed,
            certificate_expiry,
            config_version,
            detect_timeouts,
            egress_connections,
            alive_tasks,
        })
    }

    /// The counter of one listener's refusals for one reason; resolved once at start.
    pub(crate) fn http_refusals(&self, direction: Direction, reason: &'static str) -> Counter {
        let labels = RefusalLabels { direction, reason };
        self.shared
            .families
            .http_refusals
            .get_or_create_owned(&labels)
    }

    /// Reads the runtime's task count into its gauge: called at each scrape, so that a
    /// leak of tasks (one per connection or stream that never ends) shows on the page at
    /// the cost of one atomic load, and nothing on the request path.
    pub(crate) fn sample_runtime(&self) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let alive = runtime.metrics().num_alive_tasks();
            self.alive_tasks
                .set(i64::try_from(alive).unwrap_or(i64::MAX));
        }
    }

    /// The handle for (direction, service), made if no one holds one. Called when
    /// targets are built, not per request. The series stay on the page for as long as
    /// someone keeps the handle.
    pub(crate) fn service(&self, direction: Direction, service: &str) -> Arc<ServiceMetrics> {
        let labels = ServiceLabels {
            direction,
            service: service.to_string(),
        };
        let mut live = self.shared.live.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|(_, handle)| handle.strong_count() > 0);
        if let Some(found) = live
            .iter()
            .filter(|(l, _)| *l == labels)
            .find_map(|(_, handle)| handle.upgrade())
        {
            return found;
        }
        let created = Arc::new(ServiceMetrics::new(self.shared.clone(), labels.clone()));
        live.push((labels, Arc::downgrade(&created)));
        created
    }

    /// OpenMetrics text: this registry, then `more` (families made at scrape time, such
    /// as the breakers' state), then `# EOF`.
    pub(crate) fn encode(&self, more: &[&Registry]) -> String {
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        for registry in more {
            let _ = prometheus_client::encoding::text::encode_registry(&mut out, registry);
        }
        let _ = prometheus_client::encoding::text::encode_eof(&mut out);
        out
    }
}

/// The metrics of one (direction, service). Its requests are counted per edge: the
/// caller's identity (inbound) and the named route (outbound) each get their own series.
#[derive(Debug)]
pub(crate) struct ServiceMetrics {
    labels: ServiceLabels,
    shared: Arc<Shared>,
    /// Requests with no caller identity and no named route: the common case, no lookup.
    requests: Arc<RequestMetrics>,
    /// Edges with a caller or a route, made on first use; read without a lock.
    edges: ArcSwap<Vec<Arc<RequestMetrics>>>,
    /// Serialises the making of edges, so that one edge has one histogram.
    making_edge: Mutex<()>,
    inflight: Gauge,
    /// Retries, budget, bulkhead and breaker counters (outbound services).
    pub resilience: ResilienceCounters,
    /// Opaque TCP connections.
    pub tcp: tcp::TcpCounters,
}

impl ServiceMetrics {
    fn new(shared: Arc<Shared>, labels: ServiceLabels) -> Self {
        let families = &shared.families;
        let requests = Arc::new(RequestMetrics::new(families, edge(&labels, "", "")));
        let resilience = match labels.direction {
            Direction::Outbound => resilience_counters(families, &labels.service),
            Direction::Inbound => ResilienceCounters::default(),
        };
        ServiceMetrics {
            inflight: families.inflight.get_or_create_owned(&labels),
            tcp: tcp::TcpCounters::new(families.clone(), labels.clone()),
            requests,
            edges: ArcSwap::default(),
            making_edge: Mutex::new(()),
            resilience,
            labels,
            shared,
        }
    }

    pub(crate) fn service(&self) -> &str {
        &self.labels.service
    }

    /// Counts a request as in flight until the guard drops.
    pub(crate) fn start(self: &Arc<Self>) -> InflightGuard {
        self.inflight.inc();
        InflightGuard(self.clone())
    }

    /// The requests of the service with no caller identity and no named route.
    pub(crate) fn requests(&self) -> &Arc<RequestMetrics> {
        &self.requests
    }

    /// The requests from `caller` (inbound: a verified identity) on `route` (outbound: a
    /// route the TrafficPolicy names); empty strings for neither. Resolve it once per
    /// connection or per route, not per request.
    pub(crate) fn edge(&self, caller: &str, route: &str) -> Arc<RequestMetrics> {
        if caller.is_empty() && route.is_empty() {
            return self.requests.clone();
        }
        let matches = |m: &&Arc<RequestMetrics>| m.edge.caller == caller && m.edge.route == route;
        if let Some(found) = self.edges.load().iter().find(matches) {
            return found.clone();
        }
        let _making = self.making_edge.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = self.edges.load().iter().find(matches) {
            return found.clone();
        }
        let made = Arc::new(RequestMetrics::new(
            &self.shared.families,
            edge(&self.labels, caller, route),
        ));
        let mut edges = Vec::clone(&self.edges.load());
        edges.push(made.clone());
        self.edges.store(Arc::new(edges));
        made
    }

    /// Records the upstream's answer to a request without caller or route.
    pub(crate) fn record_status(&self, status: u16, elapsed: Duration) {
        self.requests.record_status(status, elapsed);
    }

    /// Records a response the proxy made itself, to a request without caller or route.
    pub(crate) fn record_error(&self, code: ErrorCode, elapsed: Duration) {
        self.requests.record_error(code, elapsed);
    }

    /// Takes the service's series off the page.
    fn remove_series(&self) {
        let families = &self.shared.families;
        families.inflight.remove(&self.labels);
        self.requests.remove_series(families);
        for edge in self.edges.load().iter() {
            edge.remove_series(families);
        }
        self.tcp.remove();
        if self.labels.direction == Direction::Outbound {
            let destination = DestinationLabels {
                service: self.labels.service.clone(),
            };
            families.retries.remove(&destination);
            families.budget_exhausted.remove(&destination);
            families.bulkhead_rejected.remove(&destination);
            for kind in ["detected", "enforced"] {
                families.ejections.remove(&EjectionLabels {
                    service: self.labels.service.clone(),
                    kind,
                });
            }
        }
    }
}

impl Drop for ServiceMetrics {
    fn drop(&mut self) {
        let live = self.shared.live.lock().unwrap_or_else(|e| e.into_inner());
        // A handle made for the same labels since this one's last reference went shares
        // its series: they stay.
        let replaced = live
            .iter()
            .any(|(labels, handle)| *labels == self.labels && handle.strong_count() > 0);
        if !replaced {
            self.remove_series();
        }
    }
}

fn edge(service: &ServiceLabels, caller: &str, route: &str) -> EdgeLabels {
    EdgeLabels {
        service: service.clone(),
        caller: caller.to_string(),
        route: route.to_string(),
    }
}

fn resilience_counters(families: &Families, service: &str) -> ResilienceCounters {
    let destination = DestinationLabels {
        service: service.to_string(),
    };
    let ejections = |kind| {
        families.ejections.get_or_create_owned(&EjectionLabels {
            service: service.to_string(),
            kind,
        })
    };
    ResilienceCounters {
        retries: families.retries.get_or_create_owned(&destination),
        budget_exhausted: families.budget_exhausted.get_or_create_owned(&destination),
        bulkhead_rejected: families.bulkhead_rejected.get_or_create_owned(&destination),
        circuits: Arc::new(CircuitMetrics {
            detected: ejections("detected"),
            enforced: ejections("enforced"),
        }),
    }
}

/// The requests of one edge: answers by status and mesh error, latency (Prometheus
/// buckets and an exact HDR histogram), and gRPC statuses.
#[derive(Debug)]
pub(crate) struct RequestMetrics {
    edge: EdgeLabels,
    requests: prometheus_client::metrics::family::Family<ResponseLabels, Counter>,
    /// Upstream answers by [`status_slot`]; a slot's series appears with its first answer.
    statuses: [OnceLock<Counter>; STATUS_SLOTS],
    /// Answers the proxy made, by [`ErrorCode::index`].
    errors: [OnceLock<Counter>; ErrorCode::ALL.len()],
    buckets: Buckets,
    /// Microseconds, 1µs to 100 s at 3 significant digits: exact enough to merge across sidecars.
    latency: Mutex<Histogram<u32>>,
    /// gRPC answers by `grpc-status` (shared with the bodies that report them).
    pub grpc: Arc<GrpcCounts>,
    /// Requests and connections of this edge the ServerPolicy refused (inbound).
    pub denials: DenialCounts,
}

impl RequestMetrics {
    fn new(families: &Families, edge: EdgeLabels) -> Self {
        RequestMetrics {
            requests: families.requests.clone(),
            statuses: std::array::from_fn(|_| OnceLock::new()),
            errors: std::array::from_fn(|_| OnceLock::new()),
            buckets: families.latency.get_or_create_owned(&edge),
            latency: Mutex::new(
                Histogram::new_with_bounds(1, LATENCY_MAX_MICROS, 3)
                    .expect("static histogram bounds"),
            ),
            grpc: Arc::new(GrpcCounts::new(families.grpc.clone(), edge.clone())),
            denials: DenialCounts::new(families.denials.clone(), edge.clone()),
            edge,
        }
    }

    /// Records the upstream's answer.
    pub(crate) fn record_status(&self, status: u16, elapsed: Duration) {
        if let Some(slot) = status_slot(status) {
            self.statuses[slot]
                .get_or_init(|| self.counter(slot_label(slot), ""))
                .inc();
        }
        self.record_latency(elapsed);
    }

    /// Records a response the proxy made itself.
    pub(crate) fn record_error(&self, code: ErrorCode, elapsed: Duration) {
        self.errors[code.index()]
            .get_or_init(|| self.counter(code.status().as_u16().to_string(), code.as_str()))
            .inc();
        self.record_latency(elapsed);
    }

    fn counter(&self, status_code: String, error: &'static str) -> Counter {
        self.requests.get_or_create_owned(&ResponseLabels {
            edge: self.edge.clone(),
            status_code,
            error,
        })
    }

    fn record_latency(&self, elapsed: Duration) {
        self.buckets.observe(elapsed);
        let micros = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        if let Ok(mut histogram) = self.latency.lock() {
            histogram.saturating_record(micros);
        }
    }

    fn remove_series(&self, families: &Families) {
        for (slot, counter) in self.statuses.iter().enumerate() {
            if counter.get().is_some() {
                self.requests.remove(&ResponseLabels {
                    edge: self.edge.clone(),
                    status_code: slot_label(slot),
                    error: "",
                });
            }
        }
        for code in ErrorCode::ALL {
            if self.errors[code.index()].get().is_some() {
                self.requests.remove(&ResponseLabels {
                    edge: self.edge.clone(),
                    status_code: code.status().as_u16().to_string(),
                    error: code.as_str(),
                });
            }
        }
        families.latency.remove(&self.edge);
        self.grpc.remove();
        self.denials.remove();
    }
}

/// Decrements the in-flight gauge when the request ends, however it ends.
pub(crate) struct InflightGuard(Arc<ServiceMetrics>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.dec();
    }
}

#[cfg(test)]
mod tests;
