//! The cluster as policy documents: each resource rendered in the form a policy file
//! holds (`apiVersion`, `kind`, `metadata`, `spec`), so that the one loader that checks
//! files checks the cluster too, and the index behind it knows nothing of Kubernetes.
//!
//! A Service whose pods carry the sidecar is a MeshService with no YAML: its cluster IPs
//! and ports are its `addresses`, its ready meshed pods' IPs and ports its `endpoints`,
//! and its pods' service account its identity. A MeshService resource of the same name
//! wins for the identity and protocol, and gets the Service's addresses and endpoints
//! added to its own.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use outrigger_api::API_VERSION;
use outrigger_certs::SpiffeId;
use serde_json::{Value, json};

use super::cluster_state::{ClusterState, Custom, ObjectKey};

/// One document: the name that stands for its file in errors, and its text.
pub(crate) type Document = (PathBuf, String);

/// Every document the cluster holds now, in a stable order.
pub(crate) fn documents(state: &ClusterState, trust_domain: &str) -> Vec<Document> {
    let discovered = discovered_services(state, trust_domain);
    let mut docs = Vec::new();
    for (key, custom) in &state.mesh_services {
        let mut spec = custom.spec.clone();
        if let (Some(found), Value::Object(fields)) = (discovered.get(key), &mut spec) {
            append_unique(
                fields,
                "addresses",
                found.addresses.iter().map(|a| json!(a)),
            );
            append_unique(
                fields,
                "endpoints",
                found.endpoints.iter().map(|a| json!({ "address": a })),
            );
        }
        docs.push(document("MeshService", key, spec));
    }
    for (key, found) in &discovered {
        if state.mesh_services.contains_key(key) {
            continue;
        }
        let spec = json!({
            "identity": found.identity,
            "addresses": found.addresses,
            "endpoints": found.endpoints.iter().map(|a| json!({ "address": a })).collect::<Vec<_>>(),
        });
        // Named after its source, so that an error about it points at the Service.
        let mut doc = document("MeshService", key, spec);
        doc.0 = name("Service", key);
        docs.push(doc);
    }
    for (key, custom) in &state.traffic_policies {
        docs.push(custom_document("TrafficPolicy", key, custom));
    }
    for (key, custom) in &state.server_policies {
        docs.push(custom_document("ServerPolicy", key, custom));
    }
    docs
}

/// How errors name a document: `MeshService shop/payments`.
pub(crate) fn name(kind: &str, (namespace, name): &ObjectKey) -> PathBuf {
    PathBuf::from(format!("{kind} {namespace}/{name}"))
}

fn custom_document(kind: &str, key: &ObjectKey, custom: &Custom) -> Document {
    document(kind, key, custom.spec.clone())
}

fn document(kind: &str, key: &ObjectKey, spec: Value) -> Document {
    let value = json!({
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": { "name": key.1, "namespace": key.0 },
        "spec": spec,
    });
    // JSON is YAML: the loader reads it as it reads a file. Pretty, so that a parse
    // error's line (dropped from cluster errors) never joins two fields.
    let text = serde_json::to_string_pretty(&value).unwrap_or_default();
    (name(kind, key), text)
}

/// Appends `extra` to the array `field` of a spec, skipping values already there; a
/// field that is not an array is left for the loader to report.
fn append_unique(
    fields: &mut serde_json::Map<String, Value>,
    field: &str,
    extra: impl Iterator<Item = Value>,
) {
    let entry = fields
        .entry(field.to_string())
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(items) = entry {
        for value in extra {
            if !items.contains(&value) {
                items.push(value);
            }
        }
    }
}

/// What a Service and its EndpointSlices say about a mesh service.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Discovered {
    pub identity: String,
    pub addresses: Vec<String>,
    pub endpoints: Vec<String>,
}

/// The Services with at least one meshed pod behind them.
pub(crate) fn discovered_services(
    state: &ClusterState,
    trust_domain: &str,
) -> BTreeMap<ObjectKey, Discovered> {
    let mut by_service: BTreeMap<ObjectKey, (BTreeMap<&str, usize>, BTreeSet<SocketAddr>)> =
        BTreeMap::new();
    for ((namespace, _), slice) in &state.slices {
        let service = (namespace.clone(), slice.service.clone());
        if !state.services.contains_key(&service) {
            continue;
        }
        for endpoint in &slice.endpoints {
            let Some(pod) = endpoint
                .pod
                .as_ref()
                .and_then(|pod| state.pods.get(&(namespace.clone(), pod.clone())))
                .filter(|pod| pod.meshed)
            else {
                // Not ours: a plain-TCP connection reaches it, not mTLS.
                continue;
            };
            let (accounts, endpoints) = by_service.entry(service.clone()).or_default();
            // Every meshed pod, ready or not, says whose identity the service has.
            *accounts.entry(&pod.service_account).or_default() += 1;
            if !endpoint.ready {
                continue;
            }
            for ip in endpoint
                .addresses
                .iter()
                .filter_map(|a| a.parse::<IpAddr>().ok())
            {
                endpoints.extend(slice.ports.iter().map(|&port| SocketAddr::new(ip, port)));
            }
        }
    }
    let mut found = BTreeMap::new();
    for (key, (accounts, endpoints)) in by_service {
        // Pods of one Service normally share a service account; when they do not, the
        // most common one is the service's identity (the others' proxies will be refused
        // by callers, which shows in their errors).
        let Some((account, _)) = accounts
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
        else {
            continue;
        };
        let Ok(identity) = SpiffeId::workload(trust_domain, &key.0, account) else {
            continue;
        };
        let service = &state.services[&key];
        let addresses = service
            .cluster_ips
            .iter()
            .filter_map(|ip| ip.parse::<IpAddr>().ok())
            .flat_map(|ip| {
                service
                    .ports
                    .iter()
                    .map(move |&port| SocketAddr::new(ip, port))
            })
            .map(|a| a.to_string())
            .collect();
        found.insert(
            key,
            Discovered {
                identity: identity.to_string(),
                addresses,
                endpoints: endpoints.iter().map(ToString::to_string).collect(),
            },
        );
    }
    found
}
