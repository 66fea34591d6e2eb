//! What the watchers have seen of the cluster, reduced to what the mesh needs: the
//! three custom resources as the API server holds them (their spec is validated later,
//! as a file's would be), and of Services, EndpointSlices and Pods only the addresses,
//! ports, readiness and service accounts. Keeping the reduction, not the objects, keeps
//! a large cluster's pods from filling the control plane's memory.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::core::DynamicObject;
use kube::runtime::watcher::Event;

use crate::inject::PROXY_CONTAINER;

/// `(namespace, name)` of a namespaced object.
pub(crate) type ObjectKey = (String, String);

/// A MeshService, TrafficPolicy or ServerPolicy as stored in the cluster.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Custom {
    /// `spec` as the API server sent it; parsed strictly later, by the policy loader.
    pub spec: serde_json::Value,
    /// `metadata.generation`, for the `observedGeneration` written into status.
    pub generation: Option<i64>,
}

/// A Service's addresses: its cluster IPs (none for a headless one) and TCP ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServiceInfo {
    pub cluster_ips: Vec<String>,
    pub ports: Vec<u16>,
}

/// One EndpointSlice: which Service it belongs to, its TCP ports, its endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SliceInfo {
    pub service: String,
    pub ports: Vec<u16>,
    pub endpoints: Vec<SliceEndpoint>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SliceEndpoint {
    pub addresses: Vec<String>,
    pub ready: bool,
    /// The pod behind it, if the endpoint names one (in the slice's namespace).
    pub pod: Option<String>,
}

/// What a pod tells the mesh: whose identity it carries, and whether it has our sidecar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PodInfo {
    pub service_account: String,
    pub meshed: bool,
}

/// Everything the watchers have seen, by kind.
#[derive(Clone, Debug, Default)]
pub(crate) struct ClusterState {
    pub mesh_services: BTreeMap<ObjectKey, Custom>,
    pub traffic_policies: BTreeMap<ObjectKey, Custom>,
    pub server_policies: BTreeMap<ObjectKey, Custom>,
    pub services: BTreeMap<ObjectKey, ServiceInfo>,
    pub slices: BTreeMap<ObjectKey, SliceInfo>,
    pub pods: BTreeMap<ObjectKey, PodInfo>,
}

/// One table of [`ClusterState`] and the objects that fill it, with a re-list in
/// progress: a watcher's `Init` .. `InitDone` replaces the table whole, so that objects
/// deleted while the watch was broken (a 410 Gone, a restart) go away.
#[derive(Debug)]
pub(crate) struct Table<V> {
    relisting: Option<BTreeMap<ObjectKey, V>>,
}

impl<V> Default for Table<V> {
    fn default() -> Self {
        Table { relisting: None }
    }
}

impl<V> Table<V> {
    /// Applies one watcher event to `table`; true if `table` may have changed.
    pub(crate) fn apply<K>(
        &mut self,
        table: &mut BTreeMap<ObjectKey, V>,
        event: Event<K>,
        reduce: impl Fn(&K) -> Option<(ObjectKey, V)>,
        key_of: impl Fn(&K) -> Option<ObjectKey>,
    ) -> bool {
        match event {
            Event::Init => {
                self.relisting = Some(BTreeMap::new());
                false
            }
            Event::InitApply(object) => {
                if let (Some(relisting), Some((key, value))) =
                    (self.relisting.as_mut(), reduce(&object))
                {
                    relisting.insert(key, value);
                }
                false
            }
            Event::InitDone => {
                *table = self.relisting.take().unwrap_or_default();
                true
            }
            Event::Apply(object) => match reduce(&object) {
                Some((key, value)) => {
                    table.insert(key, value);
                    true
                }
                // No longer of interest (a slice that lost its service label).
                None => key_of(&object).is_some_and(|key| table.remove(&key).is_some()),
            },
            Event::Delete(object) => {
                key_of(&object).is_some_and(|key| table.remove(&key).is_some())
            }
        }
    }
}

fn key(meta: &kube::core::ObjectMeta) -> Option<ObjectKey> {
    Some((meta.namespace.clone()?, meta.name.clone()?))
}

pub(crate) fn custom_key(object: &DynamicObject) -> Option<ObjectKey> {
    key(&object.metadata)
}

pub(crate) fn custom(object: &DynamicObject) -> Option<(ObjectKey, Custom)> {
    let spec = object.data.get("spec").cloned().unwrap_or_default();
    let custom = Custom {
        spec,
        generation: object.metadata.generation,
    };
    Some((custom_key(object)?, custom))
}

pub(crate) fn service_key(service: &Service) -> Option<ObjectKey> {
    key(&service.metadata)
}

pub(crate) fn service(service: &Service) -> Option<(ObjectKey, ServiceInfo)> {
    let spec = service.spec.as_ref()?;
    // ExternalName services have no addresses of their own to route by.
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    let cluster_ips = match (&spec.cluster_ips, &spec.cluster_ip) {
        (Some(ips), _) if !ips.is_empty() => ips.clone(),
        (_, Some(ip)) => vec![ip.clone()],
        _ => Vec::new(),
    };
    let cluster_ips = cluster_ips
        .into_iter()
        .filter(|ip| !ip.is_empty() && ip != "None")
        .collect();
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .filter_map(|p| u16::try_from(p.port).ok())
        .collect();
    Some((service_key(service)?, ServiceInfo { cluster_ips, ports }))
}

/// The label that names an EndpointSlice's Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

pub(crate) fn slice_key(slice: &EndpointSlice) -> Option<ObjectKey> {
    key(&slice.metadata)
}

pub(crate) fn slice(slice: &EndpointSlice) -> Option<(ObjectKey, SliceInfo)> {
    let service = slice
        .metadata
        .labels
        .as_ref()?
        .get(SERVICE_NAME_LABEL)?
        .clone();
    // FQDN slices name hosts, not addresses a connection could be redirected to.
    if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
        return None;
    }
    let ports = slice
        .ports
        .iter()
        .flatten()
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .filter_map(|p| p.port.and_then(|port| u16::try_from(port).ok()))
        .collect();
    let endpoints = slice
        .endpoints
        .iter()
        .flatten()
        .map(|e| SliceEndpoint {
            addresses: e.addresses.clone(),
            // The API says a missing `ready` is to be read as ready.
            ready: e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true),
            pod: e
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| r.name.clone()),
        })
        .collect();
    Some((
        slice_key(slice)?,
        SliceInfo {
            service,
            ports,
            endpoints,
        },
    ))
}

pub(crate) fn pod_key(pod: &Pod) -> Option<ObjectKey> {
    key(&pod.metadata)
}

pub(crate) fn pod(pod: &Pod) -> Option<(ObjectKey, PodInfo)> {
    let spec = pod.spec.as_ref()?;
    // Injection adds the proxy as a native sidecar (an init container); a pod that
    // carries it as a plain container (injected by hand) is in the mesh too.
    let meshed = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .any(|c| c.name == PROXY_CONTAINER);
    let service_account = spec
        .service_account_name
        .clone()
        .filter(|sa| !sa.is_empty())
        .unwrap_or_else(|| "default".to_string());
    Some((
        pod_key(pod)?,
        PodInfo {
            service_account,
            meshed,
        },
    ))
}
