//! Cluster mode's policy source: one kube-rs watcher per resource (the three CRDs,
//! Services, EndpointSlices, Pods) updates [`ClusterState`]; after each settled burst
//! of changes, the state is rendered as documents, checked by the policy loader, and
//! the valid part published to the same [`SnapshotPublisher`] the file source feeds.
//! Nothing is published until every watch has listed once, so that a start never
//! pushes proxies a mesh with half its endpoints.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use futures::{Stream, StreamExt as _};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::core::{ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use outrigger_api::crd::{MeshServiceResource, ServerPolicyResource, TrafficPolicyResource};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::admit::admit;
use super::cluster_state::{self as reduce, ClusterState, Table};
use super::convergence::{CustomKind, CustomObject};
use super::documents::documents;
use super::health::{self, ClusterHealth};
use crate::policy::FileCache;
use crate::reload::{ConfigHealth, settled_change};
use crate::snapshot::SnapshotPublisher;

pub(crate) const MESH_SERVICES: &str = "meshservices.outrigger.dev";
pub(crate) const TRAFFIC_POLICIES: &str = "trafficpolicies.outrigger.dev";
pub(crate) const SERVER_POLICIES: &str = "serverpolicies.outrigger.dev";
pub(crate) const SERVICES: &str = "services";
pub(crate) const ENDPOINT_SLICES: &str = "endpointslices.discovery.k8s.io";
pub(crate) const PODS: &str = "pods";

/// Every resource watched, as `/ready` names them.
pub const WATCHED: [&str; 6] = [
    MESH_SERVICES,
    TRAFFIC_POLICIES,
    SERVER_POLICIES,
    SERVICES,
    ENDPOINT_SLICES,
    PODS,
];

/// Which config version carries each published resource as it is now, and the
/// generation it had: what status convergence is measured against.
#[derive(Debug, Default)]
pub struct Published {
    /// By document name (`MeshService shop/payments`): (text, version that carries it).
    carried: BTreeMap<PathBuf, (String, u64)>,
}

impl Published {
    /// The version that carries the document `name`, if it is served.
    pub fn version_of(&self, name: &std::path::Path) -> Option<u64> {
        self.carried.get(name).map(|(_, v)| *v)
    }

    /// By document name: a digest of its text (so that replicas can tell whether they
    /// serve the same content) and the version that carries it.
    pub fn digests(&self) -> BTreeMap<String, (String, u64)> {
        self.carried
            .iter()
            .map(|(name, (text, version))| {
                let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
                let hex: String = digest.as_ref()[..16]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                (name.display().to_string(), (hex, *version))
            })
            .collect()
    }
}

/// The watchers' shared state and where their result goes.
pub struct ClusterFeed {
    trust_domain: String,
    state: Mutex<ClusterState>,
    tables: Mutex<Tables>,
    cache: Mutex<FileCache>,
    publisher: SnapshotPublisher,
    config_health: Arc<ConfigHealth>,
    health: Arc<ClusterHealth>,
    published: Mutex<Published>,
    changed: mpsc::Sender<()>,
}

/// The re-list buffers, one per table of [`ClusterState`].
#[derive(Debug, Default)]
struct Tables {
    mesh_services: Table<reduce::Custom>,
    traffic_policies: Table<reduce::Custom>,
    server_policies: Table<reduce::Custom>,
    services: Table<reduce::ServiceInfo>,
    slices: Table<reduce::SliceInfo>,
    pods: Table<reduce::PodInfo>,
}

impl ClusterFeed {
    /// A feed publishing into `publisher`; wakes the returned receiver on each change
    /// (give it to [`ClusterFeed::run_rebuilds`]).
    pub fn new(
        trust_domain: &str,
        publisher: SnapshotPublisher,
        config_health: Arc<ConfigHealth>,
        health: Arc<ClusterHealth>,
    ) -> (Arc<Self>, mpsc::Receiver<()>) {
        // One pending wake-up is enough: a rebuild reads everything anyway.
        let (changed, changes) = mpsc::channel(1);
        let feed = ClusterFeed {
            trust_domain: trust_domain.to_string(),
            state: Mutex::default(),
            tables: Mutex::default(),
            cache: Mutex::default(),
            publisher,
            config_health,
            health,
            published: Mutex::default(),
            changed,
        };
        (Arc::new(feed), changes)
    }

    /// Runs every watcher and the rebuilds until `stopping`.
    pub async fn run(
        self: Arc<Self>,
        client: Client,
        changes: mpsc::Receiver<()>,
        stopping: watch::Receiver<bool>,
    ) {
        let custom =
            |resource: ApiResource| Api::<DynamicObject>::all_with(client.clone(), &resource);
        let mesh = custom(ApiResource::erase::<MeshServiceResource>(&()));
        let traffic = custom(ApiResource::erase::<TrafficPolicyResource>(&()));
        let server = custom(ApiResource::erase::<ServerPolicyResource>(&()));
        let config = watcher::Config::default;
        tokio::join!(
            self.clone().run_rebuilds(changes, stopping.clone()),
            self.watch(
                MESH_SERVICES,
                watcher::watcher(mesh, config()),
                stopping.clone(),
                |feed, e| {
                    feed.apply(
                        e,
                        |t| &mut t.mesh_services,
                        |s| &mut s.mesh_services,
                        reduce::custom,
                        reduce::custom_key,
                    )
                }
            ),
            self.watch(
                TRAFFIC_POLICIES,
                watcher::watcher(traffic, config()),
                stopping.clone(),
                |feed, e| {
                    feed.apply(
                        e,
                        |t| &mut t.traffic_policies,
                        |s| &mut s.traffic_policies,
                        reduce::custom,
                        reduce::custom_key,
                    )
                }
            ),
            self.watch(
                SERVER_POLICIES,
                watcher::watcher(server, config()),
                stopping.clone(),
                |feed, e| {
                    feed.apply(
                        e,
                        |t| &mut t.server_policies,
                        |s| &mut s.server_policies,
                        reduce::custom,
                        reduce::custom_key,
                    )
                }
            ),
            self.watch(
                SERVICES,
                watcher::watcher(Api::<Service>::all(client.clone()), config()),
                stopping.clone(),
                |feed, e| {
                    feed.apply(
                        e,
                        |t| &mut t.services,
                        |s| &mut s.services,
                        reduce::service,
                        reduce::service_key,
                    )
                }
            ),
            self.watch(
                ENDPOINT_SLICES,
                watcher::watcher(Api::<EndpointSlice>::all(client.clone()), config()),
                stopping.clone(),
                |feed, e| {
                    feed.apply(
                        e,
                        |t| &mut t.slices,
                        |s| &mut s.slices,
                        reduce::slice,
                        reduce::slice_key,
                    )
                }
            ),
            self.watch(
                PODS,
                watcher::watcher(Api::<Pod>::all(client.clone()), config()),
                stopping.clone(),
                |feed, e| {
                    feed.apply(
                        e,
                        |t| &mut t.pods,
                        |s| &mut s.pods,
                        reduce::pod,
                        reduce::pod_key,
                    )
                }
            ),
        );
    }

    /// Applies one event to one table of the state; true if it may have changed.
    fn apply<K, V>(
        &self,
        event: Event<K>,
        buffer: impl FnOnce(&mut Tables) -> &mut Table<V>,
        table: impl FnOnce(&mut ClusterState) -> &mut BTreeMap<reduce::ObjectKey, V>,
        reduce: impl Fn(&K) -> Option<(reduce::ObjectKey, V)>,
        key_of: impl Fn(&K) -> Option<reduce::ObjectKey>,
    ) -> bool {
        let mut tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        buffer(&mut tables).apply(table(&mut state), event, reduce, key_of)
    }

    /// Follows one watcher's events (with kube's default backoff between failures:
    /// 0.8s doubling to 30s) until `stopping`.
    async fn watch<K>(
        &self,
        resource: &'static str,
        events: impl Stream<Item = Result<Event<K>, watcher::Error>> + Send,
        mut stopping: watch::Receiver<bool>,
        apply: impl Fn(&Self, Event<K>) -> bool,
    ) {
        let events = events.default_backoff();
        tokio::pin!(events);
        loop {
            let next = tokio::select! {
                next = events.next() => next,
                _ = stopping.wait_for(|stop| *stop) => return,
            };
            match next {
                Some(Ok(event)) => {
                    let listed = matches!(event, Event::InitDone);
                    let listing = matches!(event, Event::Init);
                    let changed = apply(self, event);
                    if listed {
                        info!("listed {resource}");
                        self.health.synced(resource);
                    } else if !listing {
                        self.health.working(resource);
                    }
                    if changed {
                        let _ = self.changed.try_send(());
                    }
                }
                Some(Err(e)) if health::is_expired(&e) => {
                    info!("watch of {resource} expired (410 Gone): listing again");
                }
                Some(Err(e)) => {
                    let reason = health::explain(resource, &e);
                    warn!("{reason}; retrying with backoff");
                    self.health.failed(resource, reason);
                }
                // A watcher's stream never ends; if it did, nothing more would come.
                None => return,
            }
        }
    }

    /// Rebuilds after each settled burst of changes, once every watch has listed.
    pub async fn run_rebuilds(
        self: Arc<Self>,
        mut changes: mpsc::Receiver<()>,
        mut stopping: watch::Receiver<bool>,
    ) {
        while settled_change(&mut changes, &mut stopping).await {
            if self.health.all_synced() {
                self.rebuild();
            }
        }
    }

    /// Renders the state, checks it, and publishes its valid part.
    pub fn rebuild(&self) -> Option<u64> {
        let docs = {
            let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            documents(&state, &self.trust_domain)
        };
        let (policy, served, errors) = {
            let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            admit(docs.clone(), &self.trust_domain, &mut cache)
        };
        for e in &errors {
            warn!("not served: {e}");
        }
        self.config_health
            .set(errors.iter().map(ToString::to_string).collect());
        let published = self.publisher.publish_policy(policy);
        let version = self.publisher.current().version;
        if let Some(version) = published {
            info!(
                version,
                resources = served.len(),
                "published the cluster's mesh"
            );
        }
        let texts: BTreeMap<PathBuf, String> = docs.into_iter().collect();
        let mut record = self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut carried = BTreeMap::new();
        for name in served {
            let text = texts.get(&name).cloned().unwrap_or_default();
            let since = match record.carried.get(&name) {
                Some((old, since)) if *old == text => *since,
                _ => version,
            };
            carried.insert(name, (text, since));
        }
        record.carried = carried;
        published
    }

    /// Whether every watch has listed once (before that, the mesh is partial).
    pub fn all_synced(&self) -> bool {
        self.health.all_synced()
    }

    /// Where the cluster's mesh is published.
    pub fn publisher(&self) -> &SnapshotPublisher {
        &self.publisher
    }

    /// The MeshServices, TrafficPolicies and ServerPolicies the cluster holds now.
    pub fn custom_objects(&self) -> Vec<CustomObject> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let tables = [
            (CustomKind::MeshService, &state.mesh_services),
            (CustomKind::TrafficPolicy, &state.traffic_policies),
            (CustomKind::ServerPolicy, &state.server_policies),
        ];
        let mut objects = Vec::new();
        for (kind, table) in tables {
            for ((namespace, name), custom) in table {
                let target = (kind == CustomKind::ServerPolicy)
                    .then(|| custom.spec.pointer("/targetRef/name")?.as_str())
                    .flatten()
                    .map(|target| format!("{namespace}/{target}"));
                objects.push(CustomObject {
                    kind,
                    namespace: namespace.clone(),
                    name: name.clone(),
                    generation: custom.generation,
                    target,
                });
            }
        }
        objects
    }

    /// Which version carries each served resource.
    pub fn published(&self) -> std::sync::MutexGuard<'_, Published> {
        self.published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
