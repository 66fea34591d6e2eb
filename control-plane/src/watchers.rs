//! Who is connected to `GET /v1/watch`, for the watchers gauge (every stream, with or
//! without a proxy id; `proxies` keeps what `outrigger status` shows).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use outrigger_certs::SpiffeId;

/// One connected proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatcherInfo {
    pub identity: SpiffeId,
    pub peer: SocketAddr,
    pub since: SystemTime,
}

/// The connected watchers. Entries leave when their [`WatcherGuard`] is dropped, which is
/// when their stream ends, however it ends.
#[derive(Debug, Default)]
pub struct Watchers {
    next_id: AtomicU64,
    // A std mutex: held for an insert or a remove, never across an await.
    connected: Mutex<BTreeMap<u64, WatcherInfo>>,
}

impl Watchers {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn register(self: &Arc<Self>, identity: SpiffeId, peer: SocketAddr) -> WatcherGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let info = WatcherInfo {
            identity,
            peer,
            since: SystemTime::now(),
        };
        self.lock().insert(id, info);
        WatcherGuard {
            watchers: self.clone(),
            id,
        }
    }

    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// The connected watchers, oldest first.
    pub fn list(&self) -> Vec<WatcherInfo> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, WatcherInfo>> {
        // The map stays consistent even if a holder panicked: inserts and removes are whole.
        self.connected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Keeps a watcher registered while it lives.
#[derive(Debug)]
pub struct WatcherGuard {
    watchers: Arc<Watchers>,
    id: u64,
}

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        self.watchers.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_register_and_leave() {
        let watchers = Watchers::new();
        let id = SpiffeId::from_short("cluster.local", "shop/orders").unwrap();
        let peer: SocketAddr = "127.0.0.1:1234".parse().unwrap();
        let a = watchers.register(id.clone(), peer);
        let b = watchers.register(id.clone(), peer);
        assert_eq!(watchers.count(), 2);
        drop(a);
        assert_eq!(watchers.list().len(), 1);
        assert_eq!(watchers.list()[0].identity, id);
        drop(b);
        assert_eq!(watchers.count(), 0);
    }
}
