//! What each version changed, computed once when it is published, and how a watcher
//! turns the changes since the version it was last sent into one delta line.
//!
//! The publisher holds the previous and the next config when it publishes, so it finds
//! the changed services with one merge walk (both lists are sorted by namespace and
//! name) and keeps the last [`RecentChanges::KEEP`] changes next to the config, in the
//! same `watch` channel. A watcher then composes only the changes it missed: its work and
//! its bytes per edit follow the size of the edit, not the size of the mesh.

use std::cmp::Ordering;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use outrigger_api::{ServerPolicySpec, ServerPolicyUpdate, ServiceRef, ServiceView, SnapshotDelta};

use crate::policy::ServiceKey;

/// What one version changed, from the version before it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConfigChange {
    pub version: u64,
    /// The new trust bundle, if it changed.
    pub trust_bundle: Option<String>,
    /// Services added or changed, whole, sorted.
    pub upserted: Vec<ServiceView>,
    /// Services gone, sorted.
    pub removed: Vec<ServiceRef>,
    /// ServerPolicies added or changed (`Some`) and removed (`None`).
    pub server_policies: BTreeMap<ServiceKey, Option<ServerPolicySpec>>,
}

impl ConfigChange {
    /// The change from `(services, server_policies, trust_bundle)` before to after.
    /// Both service lists must be sorted by (namespace, name), as `MeshConfig` keeps them.
    pub fn between(version: u64, before: Parts<'_>, after: Parts<'_>) -> ConfigChange {
        let (upserted, removed) = diff_services(before.services, after.services);
        ConfigChange {
            version,
            trust_bundle: (before.trust_bundle != after.trust_bundle)
                .then(|| after.trust_bundle.to_string()),
            upserted,
            removed,
            server_policies: diff_server_policies(before.server_policies, after.server_policies),
        }
    }
}

/// The parts of a config that a change is computed from.
#[derive(Clone, Copy, Debug)]
pub struct Parts<'a> {
    pub trust_bundle: &'a str,
    pub services: &'a [ServiceView],
    pub server_policies: &'a BTreeMap<ServiceKey, ServerPolicySpec>,
}

fn order(service: &ServiceView) -> (&str, &str) {
    (&service.namespace, &service.name)
}

fn service_ref(service: &ServiceView) -> ServiceRef {
    ServiceRef {
        namespace: service.namespace.clone(),
        name: service.name.clone(),
    }
}

/// One merge walk over two sorted lists: (added or changed, removed).
fn diff_services(
    before: &[ServiceView],
    after: &[ServiceView],
) -> (Vec<ServiceView>, Vec<ServiceRef>) {
    let (mut upserted, mut removed) = (Vec::new(), Vec::new());
    let (mut old, mut new) = (before.iter().peekable(), after.iter().peekable());
    loop {
        match (old.peek(), new.peek()) {
            (None, None) => break,
            (Some(o), None) => {
                removed.push(service_ref(o));
                old.next();
            }
            (None, Some(n)) => {
                upserted.push((*n).clone());
                new.next();
            }
            (Some(o), Some(n)) => match order(o).cmp(&order(n)) {
                Ordering::Less => {
                    removed.push(service_ref(o));
                    old.next();
                }
                Ordering::Greater => {
                    upserted.push((*n).clone());
                    new.next();
                }
                Ordering::Equal => {
                    if o != n {
                        upserted.push((*n).clone());
                    }
                    old.next();
                    new.next();
                }
            },
        }
    }
    (upserted, removed)
}

fn diff_server_policies(
    before: &BTreeMap<ServiceKey, ServerPolicySpec>,
    after: &BTreeMap<ServiceKey, ServerPolicySpec>,
) -> BTreeMap<ServiceKey, Option<ServerPolicySpec>> {
    let mut changed = BTreeMap::new();
    for (key, spec) in after {
        if before.get(key) != Some(spec) {
            changed.insert(key.clone(), Some(spec.clone()));
        }
    }
    for key in before.keys() {
        if !after.contains_key(key) {
            changed.insert(key.clone(), None);
        }
    }
    changed
}

/// The changes of the last versions, oldest first; shared by every watcher.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecentChanges {
    changes: VecDeque<Arc<ConfigChange>>,
}

impl RecentChanges {
    /// How many versions back a watcher can catch up with a delta. Watchers read every
    /// version they can (one line in flight), so only a reader stalled for this many
    /// edits falls back to a full state.
    pub const KEEP: usize = 64;

    /// These changes and `change`, the oldest dropped past [`Self::KEEP`]. A copy of at
    /// most `KEEP` pointers per publish, so that published configs stay immutable.
    pub fn with(&self, change: ConfigChange) -> RecentChanges {
        let mut changes = self.changes.clone();
        if changes.len() == Self::KEEP {
            changes.pop_front();
        }
        changes.push_back(Arc::new(change));
        RecentChanges { changes }
    }

    /// The changes after version `base`, up to the newest, if every one is still held.
    fn since(&self, base: u64, current: u64) -> Option<impl Iterator<Item = &ConfigChange>> {
        let skip = if base == current {
            self.changes.len()
        } else {
            let first = self.changes.front()?.version;
            if base + 1 < first || base > current {
                return None;
            }
            (base + 1 - first) as usize
        };
        Some(self.changes.range(skip..).map(|c| &**c))
    }
}

/// What a watcher that was sent version `base` gets next.
#[derive(Clone, Debug, PartialEq)]
pub enum Catchup {
    /// Nothing it holds changed (an edit to another service's ServerPolicy, say).
    UpToDate,
    /// What changed for it since `base`.
    Delta(SnapshotDelta),
    /// The changes since `base` are no longer held: it needs the whole state.
    TooFarBehind,
}

/// The delta from `base` to `current` for a watcher: later upserts and removals of a
/// service win over earlier ones; the ServerPolicy is that of `served` (the service the
/// watcher serves now), included if it changed or if the watcher now serves another
/// service than it did at `base` (`served_at_base`).
pub fn catch_up(
    recent: &RecentChanges,
    base: u64,
    current: u64,
    served_at_base: Option<&ServiceKey>,
    served: Option<&ServiceKey>,
    server_policy_now: Option<&ServerPolicySpec>,
) -> Catchup {
    let Some(changes) = recent.since(base, current) else {
        return Catchup::TooFarBehind;
    };
    let mut services: BTreeMap<ServiceRef, Option<&ServiceView>> = BTreeMap::new();
    let mut trust_bundle = None;
    let mut policy_changed = served_at_base != served;
    for change in changes {
        for service in &change.upserted {
            services.insert(service_ref(service), Some(service));
        }
        for gone in &change.removed {
            services.insert(gone.clone(), None);
        }
        if let Some(bundle) = &change.trust_bundle {
            trust_bundle = Some(bundle);
        }
        if let Some(key) = served {
            policy_changed |= change.server_policies.contains_key(key);
        }
    }
    let mut delta = SnapshotDelta {
        version: current,
        base,
        trust_bundle: trust_bundle.cloned(),
        server_policy: policy_changed.then(|| ServerPolicyUpdate {
            spec: server_policy_now.cloned(),
        }),
        ..SnapshotDelta::default()
    };
    for (key, service) in services {
        match service {
            Some(service) => delta.upserted.push(service.clone()),
            None => delta.removed.push(key),
        }
    }
    let empty = delta.trust_bundle.is_none()
        && delta.upserted.is_empty()
        && delta.removed.is_empty()
        && delta.server_policy.is_none();
    if empty {
        Catchup::UpToDate
    } else {
        Catchup::Delta(delta)
    }
}
