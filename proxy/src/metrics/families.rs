//! Every metric family of the proxy, registered once at start in one registry. A family
//! clone shares its series, so handles resolved from these write straight into what
//! `/metrics` encodes.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::buckets::Buckets;
use super::labels::{
    DenialLabels, DestinationLabels, EdgeLabels, EjectionLabels, GrpcLabels, RefusalLabels,
    ResponseLabels, ResultLabels, ServiceLabels, TcpBytesLabels,
};

type Histograms<L> = Family<L, Buckets, fn() -> Buckets>;

#[derive(Clone, Debug)]
pub(crate) struct Families {
    pub requests: Family<ResponseLabels, Counter>,
    pub latency: Histograms<EdgeLabels>,
    pub grpc: Family<GrpcLabels, Counter>,
    pub inflight: Family<ServiceLabels, Gauge>,
    pub retries: Family<DestinationLabels, Counter>,
    pub budget_exhausted: Family<DestinationLabels, Counter>,
    pub bulkhead_rejected: Family<DestinationLabels, Counter>,
    pub ejections: Family<EjectionLabels, Counter>,
    pub tcp_open: Family<ServiceLabels, Counter>,
    pub tcp_close: Family<ServiceLabels, Counter>,
    pub tcp_bytes: Family<TcpBytesLabels, Counter>,
    pub tcp_duration: Histograms<ServiceLabels>,
    pub tls_handshakes: Family<ResultLabels, Counter>,
    pub http_refusals: Family<RefusalLabels, Counter>,
    pub denials: Family<DenialLabels, Counter>,
}

impl Families {
    /// The families, registered in `registry` (prefix `outrigger_`).
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let families = Families {
            requests: Family::default(),
            latency: Family::new_with_constructor(Buckets::requests),
            grpc: Family::default(),
            inflight: Family::default(),
            retries: Family::default(),
            budget_exhausted: Family::default(),
            bulkhead_rejected: Family::default(),
            ejections: Family::default(),
            tcp_open: Family::default(),
            tcp_close: Family::default(),
            tcp_bytes: Family::default(),
            tcp_duration: Family::new_with_constructor(Buckets::connections),
            tls_handshakes: Family::default(),
            http_refusals: Family::default(),
            denials: Family::default(),
        };
        let f = families.clone();
        registry.register(
            "requests",
            "Requests answered, by status and mesh error",
            f.requests,
        );
        registry.register(
            "request_duration_seconds",
            "Time to the response's headers, as seen by this proxy",
            f.latency,
        );
        registry.register(
            "grpc_responses",
            "gRPC answers of the app or upstream, by grpc-status (a 200 may carry a failure)",
            f.grpc,
        );
        registry.register("inflight_requests", "Requests in flight", f.inflight);
        registry.register("retries", "Retries sent (tries after the first)", f.retries);
        registry.register(
            "retry_budget_exhausted",
            "Retries wanted but refused by the retry budget",
            f.budget_exhausted,
        );
        registry.register(
            "bulkhead_rejected",
            "Requests refused by the bulkhead (full, or queue timeout)",
            f.bulkhead_rejected,
        );
        registry.register(
            "circuit_ejections",
            "Breaker trips: detected, and enforced (within maxEjectedPercent)",
            f.ejections,
        );
        registry.register("tcp_open", "Opaque TCP connections opened", f.tcp_open);
        registry.register("tcp_close", "Opaque TCP connections closed", f.tcp_close);
        registry.register(
            "tcp_bytes",
            "Bytes of closed opaque TCP connections: sent by the client, and received back",
            f.tcp_bytes,
        );
        registry.register(
            "tcp_connection_duration_seconds",
            "How long opaque TCP connections lasted",
            f.tcp_duration,
        );
        registry.register(
            "tls_handshakes",
            "mTLS handshakes with peers, by result",
            f.tls_handshakes,
        );
        registry.register(
            "http_refusals",
            "Requests and connections a listener refused: limits, smuggling, HTTP/2 abuse",
            f.http_refusals,
        );
        registry.register(
            "authorization_denied",
            "Requests (http) and opaque TCP connections (tcp) the ServerPolicy refused, by caller",
            f.denials,
        );
        families
    }
}
