//! `ServerPolicy`: how a service accepts calls, enforced by its own sidecar.

use serde::{Deserialize, Serialize};

use crate::resource::{IgnoredStatus, ObjectMeta, RequestMatch, TargetRef};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServerPolicy {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: ServerPolicySpec,
    #[serde(default, skip_serializing)]
    pub status: Option<IgnoredStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
// Several `printcolumn(type_ = ...)` read to clippy as one attribute given twice.
#[allow(clippy::duplicated_attributes)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema, kube::CustomResource))]
#[cfg_attr(
    feature = "crd",
    kube(
        group = "outrigger.dev",
        version = "v1alpha1",
        kind = "ServerPolicy",
        doc = "How a MeshService accepts calls: mTLS mode, authorization, rate and concurrency limits; enforced by its own sidecars.",
        root = "ServerPolicyResource",
        namespaced,
        status = "crate::status::PolicyStatus",
        shortname = "sp",
        category = "outrigger",
        printcolumn(name = "Target", type_ = "string", json_path = ".spec.targetRef.name"),
        printcolumn(name = "mTLS", type_ = "string", json_path = ".spec.mtls"),
        printcolumn(
            name = "Default",
            type_ = "string",
            json_path = ".spec.authorization.default",
            description = "What happens to a request no rule allows"
        ),
        printcolumn(
            name = "Converged",
            type_ = "string",
            json_path = ".status.converged",
            description = "Proxies running this version, of those concerned"
        ),
        printcolumn(
            name = "Age",
            type_ = "date",
            json_path = ".metadata.creationTimestamp"
        )
    )
)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServerPolicySpec {
    pub target_ref: TargetRef,
    #[serde(default)]
    pub mtls: MtlsMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum MtlsMode {
    /// Only mTLS callers.
    #[default]
    Strict,
    /// Plaintext callers too (unauthenticated), for migrating a service into the mesh.
    Permissive,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Authorization {
    /// What happens to a request no rule matches.
    #[serde(default)]
    pub default: AuthorizationDefault,
    #[serde(default)]
    pub rules: Vec<AuthorizationRule>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum AuthorizationDefault {
    #[default]
    Deny,
    Allow,
}

/// Allows requests from identities matching `from` that match `match`. `from` holds
/// identity globs: SPIFFE ids where `*` is a whole segment or ends one and matches any run
/// of characters except `/` (e.g. `spiffe://cluster.local/ns/ops/sa/*`); see
/// [`crate::validate`] for the exact syntax.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthorizationRule {
    pub from: Vec<String>,
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matches: Option<RequestMatch>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RateLimit {
    pub requests_per_second: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

/// `{max: N}` for a fixed limit, `{adaptive: true}` to follow measured latency.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Concurrency {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive: Option<bool>,
}
