//! Whether each watch works: what `/ready` says in cluster mode. A watch that the API
//! server refuses (RBAC) or cannot serve (a CRD not installed) keeps retrying with
//! backoff; meanwhile the control plane is not ready, and says why, instead of
//! crash-looping or serving a mesh it cannot see.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use kube::runtime::watcher;

#[derive(Debug, Default)]
struct WatchState {
    /// Listed completely at least once: its part of the mesh is known.
    synced: bool,
    /// Why it fails now, if it does.
    error: Option<String>,
}

/// The state of every watch, by resource (`meshservices.outrigger.dev`).
#[derive(Debug, Default)]
pub struct ClusterHealth {
    // A std mutex: held to read or write a few fields, never across an await.
    watches: Mutex<BTreeMap<&'static str, WatchState>>,
}

impl ClusterHealth {
    /// Health for these watches, none synced yet.
    pub fn new(resources: &[&'static str]) -> Arc<Self> {
        let watches = resources
            .iter()
            .map(|r| (*r, WatchState::default()))
            .collect();
        Arc::new(ClusterHealth {
            watches: Mutex::new(watches),
        })
    }

    /// Why the control plane is not ready, one line per watch; empty when it is.
    pub fn problems(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter_map(|(resource, state)| match (&state.error, state.synced) {
                (Some(error), _) => Some(format!("watching {resource}: {error}")),
                (None, false) => Some(format!("watching {resource}: not listed yet")),
                (None, true) => None,
            })
            .collect()
    }

    /// Every watch has listed its resources once: the cluster's state is whole.
    pub fn all_synced(&self) -> bool {
        self.lock().values().all(|s| s.synced)
    }

    pub(crate) fn synced(&self, resource: &'static str) {
        let mut watches = self.lock();
        let state = watches.entry(resource).or_default();
        state.synced = true;
        state.error = None;
    }

    /// An event arrived: the watch works again.
    pub(crate) fn working(&self, resource: &'static str) {
        if let Some(state) = self.lock().get_mut(resource) {
            state.error = None;
        }
    }

    pub(crate) fn failed(&self, resource: &'static str, reason: String) {
        self.lock().entry(resource).or_default().error = Some(reason);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, WatchState>> {
        self.watches.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a failed watch means, in terms a cluster admin can act on.
pub(crate) fn explain(resource: &str, error: &watcher::Error) -> String {
    let status = match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => Some(status.as_ref()),
        watcher::Error::WatchError(status) => Some(status.as_ref()),
        _ => None,
    };
    match status {
        Some(s) if s.code == 403 => format!(
            "forbidden by RBAC: the control plane's service account may not list and watch \
             {resource} (apply k8s/rbac.yaml): {}",
            s.message
        ),
        Some(s) if s.code == 404 => format!(
            "the API server does not serve {resource}: is its CRD installed? \
             (kubectl apply -k k8s/): {}",
            s.message
        ),
        Some(s) => format!(
            "the API server answered {} {}: {}",
            s.code, s.reason, s.message
        ),
        None => error.to_string(),
    }
}

/// A 410 Gone: the watch's resourceVersion expired; the watcher lists again, which is
/// routine, not a failure.
pub(crate) fn is_expired(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::WatchError(status) => status.code == 410,
        watcher::Error::WatchFailed(kube::Error::Api(status)) => status.code == 410,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_once_every_watch_synced_and_none_failing() {
        let health = ClusterHealth::new(&["services", "pods"]);
        assert_eq!(health.problems().len(), 2);
        health.synced("services");
        health.synced("pods");
        assert!(health.problems().is_empty());
        health.failed("pods", "forbidden".into());
        assert_eq!(health.problems(), ["watching pods: forbidden"]);
        assert!(
            health.all_synced(),
            "a failure later does not unlist what was listed"
        );
        health.working("pods");
        assert!(health.problems().is_empty());
    }
}
