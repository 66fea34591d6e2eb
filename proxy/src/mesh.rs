//! The mesh as the control plane last described it, applied from the watch stream: the
//! compact table of services, the trust bundle, this proxy's ServerPolicy, and the one
//! config version all of them are at. The watch stream sends a full state first and then
//! deltas; a delta applies only on top of the version it was computed from.
//!
//! Nothing here is runtime state: the outbound side builds a service's balancer,
//! breakers and connections when the service is first called (`outbound::targets`).

mod decode;
mod policies;
mod table;

use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::identity::Identity;
use crate::inbound::{InboundPolicy, InboundPolicyCell};
use crate::metrics::ProxyMetrics;

pub(crate) use decode::{MeshUpdate, decode};
pub(crate) use table::{Destination, MeshTable, ServiceEntry};

use decode::{DeltaState, FullState, WireService};
use policies::PolicyInterner;

/// A delta that does not follow the version held: something was missed, and only a full
/// state can repair it.
#[derive(Debug, thiserror::Error)]
#[error("delta from version {base} does not apply to version {holding}")]
pub(crate) struct MissedUpdate {
    pub holding: u64,
    pub base: u64,
}

/// The applied config, shared by the watch (which writes it) and both sides of the proxy.
pub(crate) struct MeshState {
    table: ArcSwap<MeshTable>,
    /// The version applied: 0 until the first full state. The heartbeats report it.
    applied: watch::Sender<u64>,
    inbound_policy: Arc<InboundPolicyCell>,
    /// The TrafficPolicies the table's entries refer to. Only the watch writes.
    policies: Mutex<PolicyInterner>,
    identity: Arc<Identity>,
    metrics: Arc<ProxyMetrics>,
}

impl MeshState {
    pub(crate) fn new(identity: Arc<Identity>, metrics: Arc<ProxyMetrics>) -> Arc<Self> {
        Arc::new(MeshState {
            table: ArcSwap::from_pointee(MeshTable::default()),
            applied: watch::channel(0).0,
            inbound_policy: Arc::new(InboundPolicyCell::default()),
            policies: Mutex::new(PolicyInterner::default()),
            identity,
            metrics,
        })
    }

    /// The services, as of now. Cheap: requests call it once each.
    pub(crate) fn table(&self) -> arc_swap::Guard<Arc<MeshTable>> {
        self.table.load()
    }

    /// The ServerPolicy in force, for the inbound side.
    pub(crate) fn inbound_policy(&self) -> Arc<InboundPolicyCell> {
        self.inbound_policy.clone()
    }

    /// The version applied (0: none yet).
    pub(crate) fn version(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Follows the applied version (the heartbeats report it).
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    pub(crate) fn has_config(&self) -> bool {
        self.version() > 0
    }

    /// Applies one line of the watch stream; returns the version now held.
    pub(crate) fn apply(&self, update: &MeshUpdate<'_>) -> Result<u64, MissedUpdate> {
        let started = tokio::time::Instant::now();
        let (version, kind) = match update {
            MeshUpdate::Full(snapshot) => {
                self.apply_full(snapshot);
                (snapshot.version, "full")
            }
            MeshUpdate::Delta(delta) => {
                self.apply_delta(delta)?;
                (delta.version, "delta")
            }
        };
        self.metrics.config_version.set(version as i64);
        self.applied.send_replace(version);
        tracing::info!(
            version,
            kind,
            services = self.table.load().len(),
            distinct_policies = self.policies.lock().map_or(0, |p| p.len()),
            took_us = started.elapsed().as_micros() as u64,
            "config applied"
        );
        Ok(version)
    }

    fn apply_full(&self, snapshot: &FullState<'_>) {
        // The bundle first: a new anchor must be trusted before anything uses it.
        self.update_bundle(&snapshot.trust_bundle);
        let entries = self.entries(&snapshot.services);
        let table = MeshTable::from_entries(entries, self.own_namespace());
        self.table.store(Arc::new(table));
        self.forget_unused_policies();
        self.set_inbound_policy(snapshot.server_policy.as_ref());
    }

    fn apply_delta(&self, delta: &DeltaState<'_>) -> Result<(), MissedUpdate> {
        let holding = self.version();
        if delta.base != holding {
            return Err(MissedUpdate {
                holding,
                base: delta.base,
            });
        }
        if let Some(bundle) = &delta.trust_bundle {
            self.update_bundle(bundle);
        }
        if !delta.upserted.is_empty() || !delta.removed.is_empty() {
            let upserted = self.entries(&delta.upserted);
            let table = self
                .table
                .load()
                .changed(upserted, &delta.removed, self.own_namespace());
            self.table.store(Arc::new(table));
            self.forget_unused_policies();
        }
        if let Some(update) = &delta.server_policy {
            self.set_inbound_policy(update.spec.as_ref());
        }
        Ok(())
    }

    /// Table entries for services as sent; one that cannot be used is skipped with a
    /// warning, and the others still apply.
    fn entries(&self, services: &[WireService<'_>]) -> Vec<Arc<ServiceEntry>> {
        let mut policies = self.policies.lock().unwrap_or_else(PoisonError::into_inner);
        services
            .iter()
            .filter_map(
                |service| match ServiceEntry::from_wire(service, &mut policies) {
                    Ok(entry) => Some(Arc::new(entry)),
                    Err(error) => {
                        tracing::warn!(
                            service = %format_args!("{}.{}", service.name, service.namespace),
                            %error,
                            "skipping service"
                        );
                        None
                    }
                },
            )
            .collect()
    }

    /// Drops the policies of entries that are gone (once the old table is: a request
    /// still holding it keeps its entries' policies alive, and they go on the next pass).
    fn forget_unused_policies(&self) {
        self.policies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .forget_unused();
    }

    fn own_namespace(&self) -> Option<&str> {
        self.identity.id().map(|id| id.namespace())
    }

    fn update_bundle(&self, pem: &str) {
        match self.identity.bundle.update(pem) {
            Ok(true) => tracing::info!("trust bundle replaced"),
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "keeping the current trust bundle"),
        }
    }

    fn set_inbound_policy(&self, spec: Option<&outrigger_api::ServerPolicySpec>) {
        if self.inbound_policy.load().spec() != spec {
            self.inbound_policy.store(InboundPolicy::compile(spec));
        }
    }
}

#[cfg(test)]
mod tests {
    use outrigger_api::{
        Authorization, AuthorizationDefault, EndpointView, Protocol, ServerPolicySpec,
        ServerPolicyUpdate, ServiceRef, ServiceView, Snapshot, SnapshotDelta, WatchEvent,
    };
    use outrigger_certs::{CaPaths, TrustBundle, init_ca};

    use super::*;

    fn state() -> (Arc<MeshState>, String, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        init_ca(dir.path(), "cluster.local").expect("CA");
        let pem = std::fs::read_to_string(CaPaths::new(dir.path()).trust_anchor()).expect("PEM");
        let bundle = TrustBundle::from_pem(&pem).expect("bundle");
        let metrics = ProxyMetrics::new();
        let identity = Identity::new(bundle, "cluster.local", metrics.clone());
        (MeshState::new(identity, metrics), pem, dir)
    }

    fn view(name: &str, port: u16) -> ServiceView {
        ServiceView {
            addresses: vec![],
            name: name.into(),
            namespace: "shop".into(),
            identity: format!("spiffe://cluster.local/ns/shop/sa/{name}"),
            protocol: Protocol::Http,
            endpoints: vec![EndpointView {
                address: format!("127.0.0.1:{port}"),
            }],
            traffic_policy: None,
        }
    }

    fn full(version: u64, pem: &str, services: Vec<ServiceView>) -> WatchEvent {
        WatchEvent::Full(Snapshot {
            version,
            trust_bundle: pem.to_string(),
            services,
            server_policy: None,
        })
    }

    impl MeshState {
        /// Applies `event` as it arrives on the wire.
        pub(crate) fn apply_event(&self, event: &WatchEvent) -> Result<u64, MissedUpdate> {
            let line = serde_json::to_vec(event).expect("encodes");
            self.apply(&decode(&line).expect("decodes"))
        }
    }

    #[test]
    fn a_full_state_then_deltas_that_follow_it() {
        let (mesh, pem, _dir) = state();
        assert!(!mesh.has_config());
        mesh.apply_event(&full(10, &pem, vec![view("a", 1), view("b", 2)]))
            .unwrap();
        assert_eq!(mesh.version(), 10);
        let delta = WatchEvent::Delta(SnapshotDelta {
            version: 11,
            base: 10,
            upserted: vec![view("b", 3), view("c", 4)],
            removed: vec![ServiceRef {
                namespace: "shop".into(),
                name: "a".into(),
            }],
            ..SnapshotDelta::default()
        });
        assert_eq!(mesh.apply_event(&delta).unwrap(), 11);
        let table = mesh.table();
        assert!(table.lookup("a").is_none());
        assert_eq!(table.lookup("b").unwrap().endpoints[0].port(), 3);
        assert!(table.lookup("c.shop").is_some());
        assert_eq!(mesh.metrics.config_version.get(), 11);
    }

    #[test]
    fn a_delta_from_another_version_is_refused_and_changes_nothing() {
        let (mesh, pem, _dir) = state();
        mesh.apply_event(&full(10, &pem, vec![view("a", 1)]))
            .unwrap();
        let skipped = WatchEvent::Delta(SnapshotDelta {
            version: 13,
            base: 12,
            removed: vec![ServiceRef {
                namespace: "shop".into(),
                name: "a".into(),
            }],
            ..SnapshotDelta::default()
        });
        let missed = mesh.apply_event(&skipped).unwrap_err();
        assert_eq!((missed.holding, missed.base), (10, 12));
        assert_eq!(mesh.version(), 10);
        assert!(mesh.table().lookup("a").is_some());
    }

    #[test]
    fn the_inbound_policy_follows_full_states_and_deltas() {
        let (mesh, pem, _dir) = state();
        let cell = mesh.inbound_policy();
        let caller = Some("spiffe://cluster.local/ns/shop/sa/orders");
        assert!(cell.load().allows(caller, &http::Method::GET, "/"));
        let deny_all = ServerPolicySpec {
            authorization: Some(Authorization {
                default: AuthorizationDefault::Deny,
                rules: vec![],
            }),
            ..ServerPolicySpec::default()
        };
        mesh.apply_event(&WatchEvent::Full(Snapshot {
            version: 1,
            trust_bundle: pem.clone(),
            services: vec![],
            server_policy: Some(deny_all.clone()),
        }))
        .unwrap();
        assert!(!cell.load().allows(caller, &http::Method::GET, "/"));
        assert_eq!(cell.load().spec(), Some(&deny_all));
        // A delta that says nothing of it leaves it alone; one that removes it, removes it.
        let quiet = SnapshotDelta {
            version: 2,
            base: 1,
            upserted: vec![view("a", 1)],
            ..SnapshotDelta::default()
        };
        mesh.apply_event(&WatchEvent::Delta(quiet)).unwrap();
        assert!(!cell.load().allows(caller, &http::Method::GET, "/"));
        let removed = SnapshotDelta {
            version: 3,
            base: 2,
            server_policy: Some(ServerPolicyUpdate { spec: None }),
            ..SnapshotDelta::default()
        };
        mesh.apply_event(&WatchEvent::Delta(removed)).unwrap();
        assert!(cell.load().allows(caller, &http::Method::GET, "/"));
    }
}
