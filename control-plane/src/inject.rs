//! Injection: what makes a pod part of the mesh. One logic behind two doors: `outrigger
//! inject` (manifests in, manifests out: [`inject_manifests`]) and the mutating webhook
//! (`POST /v1/admission`, a JSONPatch computed from [`inject_pod`]'s result).
//!
//! A pod gets, before its own init containers:
//! 1. `outrigger-init`: `outrigger-proxy init` sets the iptables redirection (NET_ADMIN
//!    and NET_RAW, nothing else), then exits;
//! 2. `outrigger-proxy`: the proxy as a native sidecar (an init container with
//!    `restartPolicy: Always`), so it is ready before the app starts, stops after it, and
//!    lets a Job complete.
//!
//! The pod is worked on as JSON, not as typed structs: fields this code does not know (a
//! newer Kubernetes' or a typo the API server will report) must come out as they went in.

pub mod admission;
mod annotations;
mod manifests;
mod pod;
mod sidecar;

pub use annotations::{
    ANNOTATION_INJECT, ANNOTATION_LOG_LEVEL, ANNOTATION_PROXY_CPU_LIMIT,
    ANNOTATION_PROXY_CPU_REQUEST, ANNOTATION_PROXY_IMAGE, ANNOTATION_PROXY_MEMORY_LIMIT,
    ANNOTATION_PROXY_MEMORY_REQUEST, ANNOTATION_SERVICE, ANNOTATION_SKIP_INBOUND_PORTS,
    ANNOTATION_SKIP_OUTBOUND_PORTS,
};
pub use manifests::{InjectedManifests, ManifestError, Notice, inject_manifests};
pub use pod::{Outcome, inject_pod};
pub use sidecar::{
    ADMIN_PORT, INBOUND_PORT, INIT_CONTAINER, OUTBOUND_PORT, PROXY_CONTAINER, PROXY_UID,
    TOKEN_AUDIENCE, TRUST_ANCHORS_CONFIGMAP,
};

/// The control plane's API as pods reach it: its Service in namespace `outrigger`.
pub const DEFAULT_CONTROL_PLANE: &str = "outrigger-control-plane.outrigger.svc:8443";

/// The proxy image when neither the config nor the pod names one.
pub const DEFAULT_PROXY_IMAGE: &str = "outrigger/outrigger-proxy:0.1.0";

/// What every injected pod gets, whichever door it came through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InjectConfig {
    /// `host:port` of the control plane's API.
    pub control_plane: String,
    /// The proxy image (also runs `outrigger-proxy init`).
    pub proxy_image: String,
    /// The mesh's trust domain (identities are `spiffe://<it>/ns/<ns>/sa/<sa>`).
    pub trust_domain: String,
}

impl Default for InjectConfig {
    fn default() -> Self {
        InjectConfig {
            control_plane: DEFAULT_CONTROL_PLANE.to_string(),
            proxy_image: DEFAULT_PROXY_IMAGE.to_string(),
            trust_domain: outrigger_certs::DEFAULT_TRUST_DOMAIN.to_string(),
        }
    }
}

/// Why a pod could not be injected: its own annotations or spec are wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    #[error("annotation {annotation}: {message}")]
    Annotation {
        annotation: &'static str,
        message: String,
    },
    #[error("{field}: {message}")]
    Spec { field: String, message: String },
}
