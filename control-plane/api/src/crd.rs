//! The Kubernetes forms of the three resources (feature `crd`): the `CustomResource`
//! types kube derives from the same spec types the files parse into, and their
//! `CustomResourceDefinition`s, so that the schema in the cluster cannot drift from the
//! parser. Cluster mode converts a `*Resource` into the file form ([`MeshService`]...)
//! and feeds the same index.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt as _;

#[cfg(doc)]
use crate::resource::MeshService;
pub use crate::resource::MeshServiceResource;
pub use crate::server_policy::ServerPolicyResource;
pub use crate::traffic_policy::TrafficPolicyResource;

/// The group of every Outrigger resource.
pub const GROUP: &str = "outrigger.dev";

/// The CRDs with their file names in `k8s/crds/`, in a stable order.
pub fn crds() -> Vec<(&'static str, CustomResourceDefinition)> {
    let mut crds = vec![
        ("meshservices.yaml", MeshServiceResource::crd()),
        ("trafficpolicies.yaml", TrafficPolicyResource::crd()),
        ("serverpolicies.yaml", ServerPolicyResource::crd()),
    ];
    for (_, crd) in &mut crds {
        for version in &mut crd.spec.versions {
            if let Some(schema) = version
                .schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut())
            {
                kubernetes_formats(schema);
            }
        }
    }
    crds
}

/// schemars names Rust's unsigned types (`uint32`); the API server knows only the
/// OpenAPI formats (`int32`, `int64`) and warns about the rest. Same ranges, known names.
fn kubernetes_formats(schema: &mut JSONSchemaProps) {
    let (format, maximum) = match schema.format.as_deref() {
        Some("uint8") => ("int32", Some(f64::from(u8::MAX))),
        Some("uint16") => ("int32", Some(f64::from(u16::MAX))),
        Some("uint32") => ("int64", Some(f64::from(u32::MAX))),
        Some("uint64" | "uint") => ("int64", None),
        _ => ("", None),
    };
    if !format.is_empty() {
        schema.format = Some(format.to_string());
        schema.maximum = maximum.or(schema.maximum);
    }
    for child in schema.properties.iter_mut().flat_map(|p| p.values_mut()) {
        kubernetes_formats(child);
    }
    match schema.items.as_mut() {
        Some(JSONSchemaPropsOrArray::Schema(item)) => kubernetes_formats(item),
        Some(JSONSchemaPropsOrArray::Schemas(items)) => {
            items.iter_mut().for_each(kubernetes_formats)
        }
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(values)) = schema.additional_properties.as_mut() {
        kubernetes_formats(values);
    }
}
