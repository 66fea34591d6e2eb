//! Convergence of each custom resource, as one replica sees it, and summed over the
//! replicas. A replica only knows the proxies connected to it, and its config versions
//! are its own (each replica numbers them from its start), so a proxy's applied version
//! only means something to the replica it is connected to. Each replica therefore
//! counts its own proxies against its own version of each resource, and serves that
//! count at `GET /api/convergence` on its HTTP port; the status writer adds the counts
//! up. A replica that holds a resource in another form (it has not seen the latest
//! edit yet: another text digest) counts its proxies as concerned but not converged.
//!
//! Concerned proxies: every connected one for a MeshService or a TrafficPolicy (every
//! proxy is sent every service with its TrafficPolicy), and the target service's own
//! proxies for a ServerPolicy (only they are sent it).

use std::collections::BTreeMap;
use std::sync::Arc;

use outrigger_api::ProxyStatus;
use serde::{Deserialize, Serialize};

use super::documents;
use super::feed::ClusterFeed;
use crate::proxies::Proxies;

/// Which of the three custom resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CustomKind {
    MeshService,
    TrafficPolicy,
    ServerPolicy,
}

impl CustomKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CustomKind::MeshService => "MeshService",
            CustomKind::TrafficPolicy => "TrafficPolicy",
            CustomKind::ServerPolicy => "ServerPolicy",
        }
    }
}

/// One custom resource as the cluster holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomObject {
    pub kind: CustomKind,
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    /// A ServerPolicy's target service (`namespace/name`).
    pub target: Option<String>,
}

impl CustomObject {
    /// How documents, errors and reports name it: `MeshService shop/payments`.
    pub fn document_name(&self) -> String {
        documents::name(
            self.kind.as_str(),
            &(self.namespace.clone(), self.name.clone()),
        )
        .display()
        .to_string()
    }
}

/// What one replica serves at `/api/convergence`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaConvergence {
    pub replica: String,
    /// By document name (`MeshService shop/payments`); only served resources.
    pub resources: BTreeMap<String, ResourceConvergence>,
}

/// One resource on one replica.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceConvergence {
    /// Of the resource's text as this replica serves it: equal digests, same content.
    pub digest: String,
    /// This replica's config version that carries it.
    pub version: u64,
    /// Connected proxies concerned.
    pub proxies: u32,
    /// Of those, the ones that applied `version` or a later one.
    pub converged: u32,
}

/// The sum over replicas for one resource, in the leader's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summed {
    /// The leader's version that carries it.
    pub version: u64,
    pub proxies: u32,
    pub converged: u32,
}

/// One replica's counts, from what it serves and the proxies connected to it.
pub fn count(
    replica: &str,
    objects: &[CustomObject],
    carried: &BTreeMap<String, (String, u64)>,
    proxies: &[ProxyStatus],
) -> ReplicaConvergence {
    let connected: Vec<&ProxyStatus> = proxies.iter().filter(|p| p.connected).collect();
    let mut resources = BTreeMap::new();
    for object in objects {
        let name = object.document_name();
        let Some((digest, version)) = carried.get(&name) else {
            continue;
        };
        let concerned = connected.iter().filter(|p| match object.kind {
            CustomKind::ServerPolicy => p.service.is_some() && p.service == object.target,
            CustomKind::MeshService | CustomKind::TrafficPolicy => true,
        });
        let (mut total, mut applied) = (0, 0);
        for proxy in concerned {
            total += 1;
            if proxy.applied_version >= *version {
                applied += 1;
            }
        }
        resources.insert(
            name,
            ResourceConvergence {
                digest: digest.clone(),
                version: *version,
                proxies: total,
                converged: applied,
            },
        );
    }
    ReplicaConvergence {
        replica: replica.to_string(),
        resources,
    }
}

/// The leader's counts plus the others' for the resource `name`; `None` if the leader
/// does not serve it (it has an error, or is not yet seen).
pub fn sum(
    leader: &ReplicaConvergence,
    others: &[ReplicaConvergence],
    name: &str,
) -> Option<Summed> {
    let mine = leader.resources.get(name)?;
    let mut summed = Summed {
        version: mine.version,
        proxies: mine.proxies,
        converged: mine.converged,
    };
    for other in others.iter().filter(|o| o.replica != leader.replica) {
        let Some(theirs) = other.resources.get(name) else {
            continue;
        };
        summed.proxies += theirs.proxies;
        if theirs.digest == mine.digest {
            summed.converged += theirs.converged;
        }
    }
    Some(summed)
}

/// This replica's counts, computed when asked.
pub struct LocalConvergence {
    pub replica: String,
    pub feed: Arc<ClusterFeed>,
    pub proxies: Arc<Proxies>,
}

impl LocalConvergence {
    pub fn report(&self) -> ReplicaConvergence {
        let version = self.feed.publisher().current().version;
        let proxies = self.proxies.status(version, Vec::new()).proxies;
        let objects = self.feed.custom_objects();
        let carried = self.feed.published().digests();
        count(&self.replica, &objects, &carried, &proxies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(id: &str, service: &str, applied: u64, connected: bool) -> ProxyStatus {
        ProxyStatus {
            proxy_id: id.into(),
            identity: format!("spiffe://cluster.local/ns/shop/sa/{id}"),
            service: Some(service.into()),
            address: "10.0.0.1:4143".into(),
            applied_version: applied,
            last_seen_ms_ago: 0,
            connected,
        }
    }

    fn object(kind: CustomKind, name: &str, target: Option<&str>) -> CustomObject {
        CustomObject {
            kind,
            namespace: "shop".into(),
            name: name.into(),
            generation: Some(1),
            target: target.map(Into::into),
        }
    }

    #[test]
    fn counts_the_concerned_connected_proxies_against_the_carrying_version() {
        let objects = [
            object(CustomKind::MeshService, "payments", None),
            object(CustomKind::ServerPolicy, "payments", Some("shop/payments")),
            object(CustomKind::TrafficPolicy, "broken", None),
        ];
        let carried = BTreeMap::from([
            (
                "MeshService shop/payments".to_string(),
                ("d1".to_string(), 10),
            ),
            (
                "ServerPolicy shop/payments".to_string(),
                ("d2".to_string(), 12),
            ),
        ]);
        let proxies = [
            proxy("orders-1", "shop/orders", 12, true),
            proxy("payments-1", "shop/payments", 12, true),
            proxy("payments-2", "shop/payments", 11, true),
            proxy("payments-3", "shop/payments", 9, false),
        ];
        let report = count("cp-a", &objects, &carried, &proxies);
        let ms = &report.resources["MeshService shop/payments"];
        assert_eq!((ms.proxies, ms.converged, ms.version), (3, 3, 10));
        let sp = &report.resources["ServerPolicy shop/payments"];
        assert_eq!(
            (sp.proxies, sp.converged),
            (2, 1),
            "only payments' own proxies get its ServerPolicy; payments-2 is behind"
        );
        assert!(
            !report.resources.contains_key("TrafficPolicy shop/broken"),
            "not served"
        );
    }

    #[test]
    fn sums_over_replicas_counting_converged_only_where_the_content_is_the_same() {
        let entry = |digest: &str, proxies, converged| ResourceConvergence {
            digest: digest.into(),
            version: 100,
            proxies,
            converged,
        };
        let report = |replica: &str, r: ResourceConvergence| ReplicaConvergence {
            replica: replica.into(),
            resources: BTreeMap::from([("MeshService shop/payments".to_string(), r)]),
        };
        let leader = report("cp-a", entry("same", 2, 1));
        let others = [
            report("cp-b", entry("same", 3, 3)),
            report("cp-c", entry("older", 4, 4)),
            // The leader's own report, if a peer list names it, is not counted twice.
            report("cp-a", entry("same", 2, 1)),
        ];
        let summed = sum(&leader, &others, "MeshService shop/payments").unwrap();
        assert_eq!(
            summed,
            Summed {
                version: 100,
                proxies: 9,
                converged: 4
            }
        );
        assert_eq!(sum(&leader, &others, "MeshService shop/orders"), None);
    }
}
