//! The types both sides of Outrigger agree on: the resources users write as YAML and the
//! JSON the control plane and the proxies exchange. serde only, no I/O.

pub mod duration;
pub mod resource;
pub mod wire;

pub use duration::{DurationError, parse_duration};
pub use resource::{
    API_VERSION, DEFAULT_NAMESPACE, MeshService, MeshServiceSpec, ObjectMeta, Protocol,
    StaticEndpoint, TypeHeader,
};
pub use wire::{
    ApiError, CertificateRequest, CertificateResponse, EndpointView, ServiceView, Snapshot,
};
