//! The types both sides of Outrigger agree on: the resources users write as YAML and the
//! JSON the control plane and the proxies exchange. serde only, no I/O.

#[cfg(feature = "crd")]
pub mod crd;
pub mod duration;
pub mod exposition;
pub mod resource;
pub mod retry_condition;
pub mod server_policy;
pub mod stats;
pub mod status;
pub mod traffic_policy;
pub mod validate;
pub mod wire;

pub use duration::{DurationError, HumanDuration, format_duration, parse_duration};
pub use resource::{
    API_VERSION, DEFAULT_NAMESPACE, IgnoredStatus, MeshService, MeshServiceSpec, ObjectMeta,
    Protocol, RequestMatch, StaticEndpoint, TargetRef, TypeHeader,
};
pub use retry_condition::{RETRY_CONDITION_NAMES, RetryCondition, UnknownRetryCondition};
pub use server_policy::{
    Authorization, AuthorizationDefault, AuthorizationRule, Concurrency, MtlsMode, RateLimit,
    ServerPolicy, ServerPolicySpec,
};
pub use stats::{
    CircuitView, EdgeStats, Golden, MeshStats, ResilienceReport, ResilienceStats, SeriesReport,
    ServiceStats, ServiceTimeline, Side, StatsAccepted, StatsReport, Timeline,
};
pub use status::{MeshServiceStatus, PolicyStatus, converged_text};
pub use traffic_policy::{
    BackendRef, BackoffSpec, BulkheadSpec, CircuitBreaker, FailureRateSpec, Fallback, LoadBalancer,
    Retries, RetryBudgetSpec, RouteSpec, Timeouts, TrafficPolicy, TrafficPolicySpec,
};
pub use validate::{FieldError, check_identity_glob, is_http_method};
pub use wire::{
    ApiError, CertificateRequest, CertificateResponse, EndpointView, Heartbeat, HeartbeatResponse,
    Instance, MeshStatus, ProxyStatus, ServerPolicyUpdate, ServiceRef, ServiceView, Snapshot,
    SnapshotDelta, WatchEvent,
};
