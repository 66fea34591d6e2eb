//! The CRD-like resources users write (`apiVersion`, `kind`, `metadata`, `spec`).
//! Unknown fields are errors everywhere, so a typo never silently turns a policy off.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The group/version every resource carries.
pub const API_VERSION: &str = "outrigger.dev/v1alpha1";

/// The namespace of a resource that names none, as in Kubernetes.
pub const DEFAULT_NAMESPACE: &str = "default";

fn default_namespace() -> String {
    DEFAULT_NAMESPACE.to_string()
}

/// Just enough of a document to know what it is; read first, before the full parse.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeHeader {
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
}

/// The part of Kubernetes' `metadata` a file may hold. Labels and annotations are
/// accepted (and not used) so that one file serves `kubectl apply` and the policy dir;
/// what the API server writes (uid, resourceVersion...) is still refused as a typo would be.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectMeta {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A `status:` block in a file: what the cluster writes back (convergence), read and
/// ignored by the file source, so that a resource saved from the cluster still loads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IgnoredStatus;

impl<'de> Deserialize<'de> for IgnoredStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d)?;
        Ok(IgnoredStatus)
    }
}

/// A logical service and its instances.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MeshService {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: MeshServiceSpec,
    #[serde(default, skip_serializing)]
    pub status: Option<IgnoredStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
// Several `printcolumn(type_ = ...)` read to clippy as one attribute given twice.
#[allow(clippy::duplicated_attributes)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema, kube::CustomResource))]
#[cfg_attr(
    feature = "crd",
    kube(
        group = "outrigger.dev",
        version = "v1alpha1",
        kind = "MeshService",
        doc = "A logical service of the mesh: its identity, protocol and static instances.",
        root = "MeshServiceResource",
        namespaced,
        status = "crate::status::MeshServiceStatus",
        shortname = "msvc",
        category = "outrigger",
        printcolumn(name = "Identity", type_ = "string", json_path = ".spec.identity"),
        printcolumn(name = "Protocol", type_ = "string", json_path = ".spec.protocol"),
        printcolumn(
            name = "Endpoints",
            type_ = "integer",
            json_path = ".status.endpoints",
            description = "Ready instances, static and discovered"
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
pub struct MeshServiceSpec {
    /// The SPIFFE id its instances must present.
    pub identity: String,
    #[serde(default)]
    pub protocol: Protocol,
    /// Service addresses (`ip:port`, such as a Kubernetes ClusterIP and port): a
    /// redirected connection to one of them is routed to this service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// Static instances; registered ones are added to these.
    #[serde(default)]
    pub endpoints: Vec<StaticEndpoint>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1 or HTTP/2, detected.
    #[default]
    Http,
    Grpc,
    Tcp,
}

/// Names the `MeshService` a policy is for, in the policy's own namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TargetRef {
    pub kind: String,
    pub name: String,
}

/// Which requests a route or a rule is about. Absent fields match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequestMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Upper-case HTTP methods; empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Headers that must be present with exactly these values (names in any case).
    /// TrafficPolicy routes only: an authorization rule that matched on headers would
    /// let a caller in by what it chooses to send.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct StaticEndpoint {
    /// `ip:port` of the instance's sidecar inbound port.
    pub address: String,
}
