//! The configuration being served, as a `watch` channel of whole snapshots: a watcher
//! always gets the latest one (never a backlog), and a reload only sends a new value.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use outrigger_api::{ServiceView, Snapshot};
use tokio::sync::watch;

use crate::policy::Policy;

/// The sending side: publishes new snapshots, numbering them.
#[derive(Clone, Debug)]
pub struct SnapshotPublisher {
    tx: watch::Sender<Arc<Snapshot>>,
}

impl SnapshotPublisher {
    /// Starts at the current Unix time in milliseconds, so that versions keep growing
    /// across restarts and a proxy never mistakes new config for old.
    pub fn new(trust_bundle: String, policy: Policy) -> Self {
        let version = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(1);
        let (tx, _) = watch::channel(Arc::new(Snapshot {
            version,
            trust_bundle,
            services: policy.services,
            server_policy: None,
        }));
        SnapshotPublisher { tx }
    }

    /// Publishes new services; returns the new version, or `None` if nothing changed
    /// (watchers are not woken for an identical config).
    pub fn publish_services(&self, services: Vec<ServiceView>) -> Option<u64> {
        self.update(|snap| snap.services = services)
    }

    /// Publishes a new trust bundle (anchor rotation); same contract as `publish_services`.
    pub fn publish_trust_bundle(&self, trust_bundle: String) -> Option<u64> {
        self.update(|snap| snap.trust_bundle = trust_bundle)
    }

    fn update(&self, change: impl FnOnce(&mut Snapshot)) -> Option<u64> {
        let mut version = None;
        self.tx.send_if_modified(|current| {
            let mut next = Snapshot::clone(current);
            change(&mut next);
            if next.services == current.services && next.trust_bundle == current.trust_bundle {
                return false;
            }
            next.version = current.version + 1;
            version = Some(next.version);
            *current = Arc::new(next);
            true
        });
        version
    }

    pub fn current(&self) -> Arc<Snapshot> {
        self.tx.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outrigger_api::Protocol;

    fn service(name: &str) -> ServiceView {
        ServiceView {
            name: name.into(),
            namespace: "shop".into(),
            identity: format!("spiffe://cluster.local/ns/shop/sa/{name}"),
            protocol: Protocol::Http,
            endpoints: vec![],
            traffic_policy: None,
        }
    }

    #[test]
    fn versions_grow_by_one_per_change_only() {
        let publisher = SnapshotPublisher::new("pem".into(), Policy::default());
        let first = publisher.current().version;
        assert!(first > 1_600_000_000_000, "starts at unix millis");
        let mut rx = publisher.subscribe();
        assert_eq!(
            publisher.publish_services(vec![service("a")]),
            Some(first + 1)
        );
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        assert_eq!(publisher.publish_services(vec![service("a")]), None);
        assert!(!rx.has_changed().unwrap());
        assert_eq!(
            publisher.publish_trust_bundle("pem2".into()),
            Some(first + 2)
        );
        assert_eq!(publisher.current().services, vec![service("a")]);
    }
}
