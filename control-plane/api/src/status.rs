//! What the cluster writes back into a resource's `status`: how far it has reached the
//! proxies. The control plane's cluster mode fills it (one replica, chosen by a Lease);
//! the file source reads any `status:` and ignores it ([`crate::IgnoredStatus`]).

use serde::{Deserialize, Serialize};

/// Convergence of a `MeshService`, and how many instances it has.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MeshServiceStatus {
    /// The control plane's config version that carries this resource as it is now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The `metadata.generation` that `version` carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Proxies concerned by this resource that have applied `version` or a later one.
    #[serde(default)]
    pub proxies_converged: u32,
    /// Proxies concerned by this resource: its callers and its own instances.
    #[serde(default)]
    pub proxies: u32,
    /// `proxiesConverged/proxies` (such as `3/3`): one column in `kubectl get`, which
    /// cannot compute it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converged: Option<String>,
    /// Ready instances, static and discovered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<u32>,
}

/// Convergence of a `TrafficPolicy` or a `ServerPolicy`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// The control plane's config version that carries this resource as it is now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The `metadata.generation` that `version` carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Proxies concerned by this policy that have applied `version` or a later one.
    #[serde(default)]
    pub proxies_converged: u32,
    /// Proxies concerned by this policy: the callers (TrafficPolicy) or the target's
    /// instances (ServerPolicy).
    #[serde(default)]
    pub proxies: u32,
    /// `proxiesConverged/proxies`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converged: Option<String>,
}

/// `applied/total`, as the `converged` fields hold it.
pub fn converged_text(applied: u32, total: u32) -> String {
    format!("{applied}/{total}")
}
