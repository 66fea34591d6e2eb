//! The configuration being served: one global, versioned [`MeshConfig`] made of the
//! policy files, the registered instances and the trust bundle, in a `watch` channel (a
//! watcher always gets the latest, never a backlog). Each proxy's [`Snapshot`] is cut
//! from it when sent: every service with its TrafficPolicy, and the ServerPolicy of the
//! service the proxy serves. Any change to any part bumps the one version by one, so a
//! proxy that reports version N has everything of version N.
//!
//! Each published config also carries what the last versions changed
//! ([`changes::RecentChanges`]), computed once here, so that a watcher sends a proxy only
//! what changed since the version it last sent it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use outrigger_api::{EndpointView, ServerPolicySpec, ServiceView, Snapshot};
use outrigger_certs::SpiffeId;
use tokio::sync::watch;

use crate::policy::{Policy, ServiceKey};

pub mod changes;

use changes::Parts;
pub use changes::{Catchup, ConfigChange, RecentChanges};

/// An instance registered by its sidecar, healthy and not expired.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RegisteredEndpoint {
    /// `ip:port` of the sidecar's inbound port.
    pub address: String,
    /// The identity it registered with: it only counts while the service still has it.
    pub identity: String,
}

/// The registered instances of each service.
pub type Registered = BTreeMap<ServiceKey, BTreeSet<RegisteredEndpoint>>;

/// Everything being served, at one version.
#[derive(Clone, Debug, PartialEq)]
pub struct MeshConfig {
    pub version: u64,
    pub trust_bundle: String,
    /// Sorted by namespace and name; endpoints are the static ones, then the registered.
    pub services: Vec<ServiceView>,
    pub server_policies: BTreeMap<ServiceKey, ServerPolicySpec>,
    /// What this version and the ones before it changed, newest last.
    pub recent: RecentChanges,
}

impl MeshConfig {
    pub fn service(&self, key: &ServiceKey) -> Option<&ServiceView> {
        self.services
            .binary_search_by(|s| (s.namespace.as_str(), s.name.as_str()).cmp(&key.as_pair()))
            .ok()
            .map(|i| &self.services[i])
    }

    /// The service a proxy with `identity` serves: the one it asked for (the watch's
    /// `service` parameter), else the only service whose identity is its own, else none.
    pub fn served_by(
        &self,
        requested: Option<&ServiceKey>,
        identity: &SpiffeId,
    ) -> Option<ServiceKey> {
        if let Some(requested) = requested {
            return Some(requested.clone());
        }
        let mut mine = self
            .services
            .iter()
            .filter(|s| s.identity == identity.as_str());
        match (mine.next(), mine.next()) {
            (Some(only), None) => Some(ServiceKey::new(&only.namespace, &only.name)),
            _ => None,
        }
    }

    /// What one proxy gets: every service, and the ServerPolicy of `served` if it has one.
    pub fn snapshot_for(&self, served: Option<&ServiceKey>) -> Snapshot {
        Snapshot {
            version: self.version,
            trust_bundle: self.trust_bundle.clone(),
            services: self.services.clone(),
            server_policy: served.and_then(|key| self.server_policies.get(key).cloned()),
        }
    }

    /// What a proxy that was sent version `base`, serving `served_at_base` then, needs to
    /// reach this version, serving `served` now (see [`changes::catch_up`]).
    pub fn catch_up(
        &self,
        base: u64,
        served_at_base: Option<&ServiceKey>,
        served: Option<&ServiceKey>,
    ) -> Catchup {
        changes::catch_up(
            &self.recent,
            base,
            self.version,
            served_at_base,
            served,
            served.and_then(|key| self.server_policies.get(key)),
        )
    }

    fn parts(&self) -> Parts<'_> {
        Parts {
            trust_bundle: &self.trust_bundle,
            services: &self.services,
            server_policies: &self.server_policies,
        }
    }
}

/// What the config is made of.
#[derive(Debug)]
struct Inputs {
    trust_bundle: String,
    policy: Policy,
    registered: Registered,
}

impl Inputs {
    /// The services with their static and registered endpoints (deduplicated).
    fn services(&self) -> Vec<ServiceView> {
        let mut services = self.policy.services.clone();
        for service in &mut services {
            let key = ServiceKey::new(&service.namespace, &service.name);
            let Some(registered) = self.registered.get(&key) else {
                continue;
            };
            for endpoint in registered {
                let new = endpoint.identity == service.identity
                    && !service
                        .endpoints
                        .iter()
                        .any(|e| e.address == endpoint.address);
                if new {
                    service.endpoints.push(EndpointView {
                        address: endpoint.address.clone(),
                    });
                }
            }
        }
        // Deltas are found by a merge walk over the previous and the next list.
        services.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        services
    }
}

/// The sending side: rebuilds the config when a part changes, and numbers it.
#[derive(Clone, Debug)]
pub struct SnapshotPublisher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    // A std mutex, held to rebuild and send (no await): changes are applied in order.
    inputs: Mutex<Inputs>,
    tx: watch::Sender<Arc<MeshConfig>>,
}

impl SnapshotPublisher {
    /// Starts at the current Unix time in milliseconds, so that versions keep growing
    /// across restarts and a proxy never mistakes new config for old.
    pub fn new(trust_bundle: String, policy: Policy) -> Self {
        let version = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(1);
        let inputs = Inputs {
            trust_bundle,
            policy,
            registered: Registered::new(),
        };
        let config = MeshConfig {
            version,
            trust_bundle: inputs.trust_bundle.clone(),
            services: inputs.services(),
            server_policies: inputs.policy.server_policies.clone(),
            recent: RecentChanges::default(),
        };
        let (tx, _) = watch::channel(Arc::new(config));
        SnapshotPublisher {
            inner: Arc::new(Inner {
                inputs: Mutex::new(inputs),
                tx,
            }),
        }
    }

    /// Publishes a new policy (a reload); returns the new version, or `None` if nothing
    /// changed (watchers are not woken for an identical config).
    pub fn publish_policy(&self, policy: Policy) -> Option<u64> {
        self.update(|inputs| inputs.policy = policy)
    }

    /// Publishes the registered instances; same contract as `publish_policy`.
    pub fn publish_registered(&self, registered: Registered) -> Option<u64> {
        self.update(|inputs| inputs.registered = registered)
    }

    /// Publishes a new trust bundle (anchor rotation); same contract as `publish_policy`.
    pub fn publish_trust_bundle(&self, trust_bundle: String) -> Option<u64> {
        self.update(|inputs| inputs.trust_bundle = trust_bundle)
    }

    fn update(&self, change: impl FnOnce(&mut Inputs)) -> Option<u64> {
        let mut inputs = self
            .inner
            .inputs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        change(&mut inputs);
        let services = inputs.services();
        let mut published = None;
        self.inner.tx.send_if_modified(|current| {
            let same = current.services == services
                && current.trust_bundle == inputs.trust_bundle
                && current.server_policies == inputs.policy.server_policies;
            if same {
                return false;
            }
            let version = current.version + 1;
            let change = ConfigChange::between(
                version,
                current.parts(),
                Parts {
                    trust_bundle: &inputs.trust_bundle,
                    services: &services,
                    server_policies: &inputs.policy.server_policies,
                },
            );
            let next = MeshConfig {
                version,
                trust_bundle: inputs.trust_bundle.clone(),
                recent: current.recent.with(change),
                services,
                server_policies: inputs.policy.server_policies.clone(),
            };
            published = Some(next.version);
            *current = Arc::new(next);
            true
        });
        published
    }

    pub fn current(&self) -> Arc<MeshConfig> {
        self.inner.tx.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<MeshConfig>> {
        self.inner.tx.subscribe()
    }
}

#[cfg(test)]
mod delta_tests;
#[cfg(test)]
mod tests;
