//! `TrafficPolicy`: how callers call a service, enforced by each caller's sidecar. Every
//! field is optional; the proxy fills in DESIGN.md's defaults for what is absent, and a
//! route's settings override the policy's for the requests it matches.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;
use crate::resource::{IgnoredStatus, ObjectMeta, RequestMatch, TargetRef};
#[cfg(doc)]
use crate::retry_condition::RetryCondition;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TrafficPolicy {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: TrafficPolicySpec,
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
        kind = "TrafficPolicy",
        doc = "How callers call a MeshService: timeouts, retries, circuit breaking, bulkheads, balancing; enforced by the callers' sidecars.",
        root = "TrafficPolicyResource",
        namespaced,
        status = "crate::status::PolicyStatus",
        shortname = "tp",
        category = "outrigger",
        printcolumn(name = "Target", type_ = "string", json_path = ".spec.targetRef.name"),
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
pub struct TrafficPolicySpec {
    pub target_ref: TargetRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<Retries>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulkhead: Option<BulkheadSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
    /// Overrides for matching requests; the first match wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteSpec>,
    /// Where the target's traffic goes, by weight, per request; empty: the target alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<BackendRef>,
}

/// A service that takes a share of another's traffic (a canary, a new version, the
/// rest of a strangler-fig migration), in the policy's namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackendRef {
    pub service: String,
    /// Relative to the other backends' weights; 0 sends it nothing.
    pub weight: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Timeouts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<HumanDuration>,
    /// The whole request, retries included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<HumanDuration>,
    /// Pooled connections and streams with no traffic for this long are closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<HumanDuration>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Retries {
    /// Retries after the first try; 0 turns retries off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<HumanDuration>,
    /// [`RetryCondition`]s as written. Text here, parsed by validation: a wrong entry is
    /// then reported along with every other problem of the document, where a serde error
    /// would stop at the first one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<BackoffSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<RetryBudgetSpec>,
    /// Retry methods that are not idempotent too (POST, PATCH): an opt-in, best set only
    /// on the routes whose handlers tolerate a repeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub non_idempotent: Option<bool>,
}

impl Retries {
    /// The `retryOn` conditions that parse (validation has refused any other).
    pub fn retry_conditions(&self) -> Option<Vec<crate::RetryCondition>> {
        let names = self.retry_on.as_ref()?;
        Some(names.iter().filter_map(|n| n.parse().ok()).collect())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackoffSpec {
    pub base: HumanDuration,
    pub max: HumanDuration,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RetryBudgetSpec {
    /// Retries allowed as a share of requests (0.2 = 20%).
    pub ratio: f64,
    /// Retries allowed per second regardless of the ratio.
    pub min_per_second: u32,
    pub window: HumanDuration,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CircuitBreaker {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_rate: Option<FailureRateSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejected_percent: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FailureRateSpec {
    pub threshold: f64,
    pub min_requests: u32,
    pub window: HumanDuration,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BulkheadSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_requests: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_requests: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections_per_endpoint: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_timeout: Option<HumanDuration>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum LoadBalancer {
    /// Power of two choices over peak-EWMA latency.
    #[default]
    PeakEwma,
    LeastRequest,
    RoundRobin,
}

/// The response served instead of `circuit-open`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Fallback {
    pub status: u16,
    #[serde(default)]
    pub body: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteSpec {
    /// A name for the route's metrics (`route` label) and access log; unnamed routes
    /// are counted with the service's other requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "match")]
    pub matches: RequestMatch,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<Retries>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
    /// The backends of matching requests, instead of the policy's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backends: Option<Vec<BackendRef>>,
}
