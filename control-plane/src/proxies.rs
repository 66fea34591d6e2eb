//! Which proxy runs which config version: what `GET /api/status` and `outrigger status`
//! show. Proxies are keyed by the id they choose (`proxy_id` in heartbeats, `proxy` on
//! the watch); a watch without one is not listed (it cannot report a version).
//!
//! A proxy is connected while one of its watch streams is open. The mesh has converged
//! when every connected proxy has applied the current version; with no proxy connected
//! it has, trivially. A proxy neither connected nor seen for 5 minutes is forgotten.
//! Time is tokio's, so that this can be tested with paused time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use outrigger_api::{MeshStatus, ProxyStatus};
use outrigger_certs::SpiffeId;
use tokio::time::Instant;

use crate::policy::ServiceKey;

/// Proxies not connected and not heard from for this long are forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(300);
/// The default `--max-proxies-per-identity`: proxy ids are the proxies' to choose, so
/// without a cap one certificate could fill this table with made-up ones.
pub const DEFAULT_MAX_PER_IDENTITY: usize = 10_000;

/// A new proxy id of an identity that has `--max-proxies-per-identity` known already.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{identity} already has {max} proxies known to the control plane, the most --max-proxies-per-identity allows: a new proxy id is refused until others disconnect and are forgotten (5 minutes after their last heartbeat)"
)]
pub struct TooManyProxies {
    pub identity: String,
    pub max: usize,
}

#[derive(Clone, Debug)]
struct Entry {
    identity: String,
    service: Option<ServiceKey>,
    /// The registered instance's address, if it registered one.
    registered: Option<String>,
    /// Where it last connected from.
    peer: SocketAddr,
    applied_version: u64,
    /// `(sent, current)`: its watch sent it version `sent`, and nothing it holds changed
    /// up to version `current`, so it got no line; having applied `sent` it is current.
    holds_current: Option<(u64, u64)>,
    last_seen: Instant,
    /// Open watch streams.
    watches: u32,
}

#[derive(Debug)]
pub struct Proxies {
    max_per_identity: usize,
    // A std mutex: held for an update or a copy, never across an await.
    entries: Mutex<Entries>,
}

/// The proxies by id, and how many each identity has (what the cap counts).
#[derive(Debug, Default)]
struct Entries {
    by_id: HashMap<String, Entry>,
    per_identity: HashMap<String, usize>,
}

impl Entries {
    /// Forgets proxies neither connected nor seen for [`FORGET_AFTER`].
    fn forget_stale(&mut self, now: Instant) {
        let mut forgotten = Vec::new();
        self.by_id.retain(|_, e| {
            let keep = e.watches > 0 || now.duration_since(e.last_seen) < FORGET_AFTER;
            if !keep {
                forgotten.push(std::mem::take(&mut e.identity));
            }
            keep
        });
        for identity in forgotten {
            self.uncount(&identity);
        }
    }

    fn count(&self, identity: &str) -> usize {
        self.per_identity.get(identity).copied().unwrap_or(0)
    }

    fn uncount(&mut self, identity: &str) {
        if let Some(n) = self.per_identity.get_mut(identity) {
            *n -= 1;
            if *n == 0 {
                self.per_identity.remove(identity);
            }
        }
    }
}

/// What a heartbeat says about its proxy.
#[derive(Clone, Debug)]
pub struct Seen<'a> {
    pub proxy_id: &'a str,
    pub identity: &'a SpiffeId,
    pub peer: SocketAddr,
}

impl Proxies {
    /// A table that keeps at most [`DEFAULT_MAX_PER_IDENTITY`] proxies per identity.
    pub fn new() -> Arc<Self> {
        Self::with_max_per_identity(DEFAULT_MAX_PER_IDENTITY)
    }

    /// A table that keeps at most `max` proxies per identity.
    pub fn with_max_per_identity(max: usize) -> Arc<Self> {
        Arc::new(Proxies {
            max_per_identity: max,
            entries: Mutex::default(),
        })
    }

    /// Makes sure the proxy is known (a heartbeat does this first, so that a refused
    /// proxy registers nothing either).
    pub fn admit(&self, seen: &Seen<'_>) -> Result<(), TooManyProxies> {
        self.upsert(&mut self.lock(), seen).map(|_| ())
    }

    /// A heartbeat: the version it applied and the instance it registered (if accepted).
    pub fn heartbeat(
        &self,
        seen: Seen<'_>,
        applied_version: u64,
        instance: Option<(ServiceKey, String)>,
    ) -> Result<(), TooManyProxies> {
        let mut entries = self.lock();
        let entry = self.upsert(&mut entries, &seen)?;
        entry.applied_version = applied_version;
        if let Some((service, address)) = instance {
            entry.service = Some(service);
            entry.registered = Some(address);
        } else {
            entry.registered = None;
        }
        Ok(())
    }

    /// A watch stream opened by the proxy; it stays connected while the guard lives.
    /// `service` is the service it is served as, if known.
    pub fn watch_opened(
        self: &Arc<Self>,
        seen: Seen<'_>,
        service: Option<ServiceKey>,
    ) -> Result<ProxyWatchGuard, TooManyProxies> {
        let mut entries = self.lock();
        let entry = self.upsert(&mut entries, &seen)?;
        entry.watches += 1;
        if entry.registered.is_none() && service.is_some() {
            entry.service = service;
        }
        Ok(ProxyWatchGuard {
            proxies: self.clone(),
            proxy_id: seen.proxy_id.to_string(),
        })
    }

    /// Proxies known, connected or not.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The mesh as `outrigger status` shows it, at config `version`.
    pub fn status(&self, version: u64, config_errors: Vec<String>) -> MeshStatus {
        let now = Instant::now();
        let mut entries = self.lock();
        entries.forget_stale(now);
        let mut proxies: Vec<ProxyStatus> = entries
            .by_id
            .iter()
            .map(|(id, e)| ProxyStatus {
                proxy_id: id.clone(),
                identity: e.identity.clone(),
                service: e.service.as_ref().map(ToString::to_string),
                address: e.registered.clone().unwrap_or_else(|| e.peer.to_string()),
                applied_version: e.applied_version,
                last_seen_ms_ago: now.duration_since(e.last_seen).as_millis() as u64,
                connected: e.watches > 0,
            })
            .collect();
        proxies.sort_by(|a, b| a.proxy_id.cmp(&b.proxy_id));
        let converged = entries.by_id.values().filter(|e| e.watches > 0).all(|e| {
            e.applied_version == version || e.holds_current == Some((e.applied_version, version))
        });
        MeshStatus {
            version,
            converged,
            config_errors,
            proxies,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The proxy's entry, made if new and its identity has room.
    fn upsert<'m>(
        &self,
        entries: &'m mut Entries,
        seen: &Seen<'_>,
    ) -> Result<&'m mut Entry, TooManyProxies> {
        let now = Instant::now();
        let identity = seen.identity.as_str();
        let known_as =
            |entries: &Entries| entries.by_id.get(seen.proxy_id).map(|e| e.identity.clone());
        let mut previous = known_as(entries);
        if previous.as_deref() != Some(identity) {
            // New to this identity: forgetting the stale first may make room (and may
            // forget this proxy's old entry).
            if entries.count(identity) >= self.max_per_identity {
                entries.forget_stale(now);
                previous = known_as(entries);
            }
            if entries.count(identity) >= self.max_per_identity {
                return Err(TooManyProxies {
                    identity: identity.to_string(),
                    max: self.max_per_identity,
                });
            }
            if let Some(previous) = previous {
                entries.uncount(&previous);
            }
            *entries
                .per_identity
                .entry(identity.to_string())
                .or_default() += 1;
        }
        let entry = entries
            .by_id
            .entry(seen.proxy_id.to_string())
            .or_insert_with(|| Entry {
                identity: identity.to_string(),
                service: None,
                registered: None,
                peer: seen.peer,
                applied_version: 0,
                holds_current: None,
                last_seen: now,
                watches: 0,
            });
        entry.identity = identity.to_string();
        entry.peer = seen.peer;
        entry.last_seen = now;
        Ok(entry)
    }
}

/// Keeps a proxy connected while its watch stream is open.
#[derive(Debug)]
pub struct ProxyWatchGuard {
    proxies: Arc<Proxies>,
    proxy_id: String,
}

impl ProxyWatchGuard {
    /// The proxy's watch sent it version `sent`, and nothing it holds changed up to
    /// `current`: once it applies `sent`, it runs the current config.
    pub fn holds_current(&self, sent: u64, current: u64) {
        if let Some(entry) = self.proxies.lock().by_id.get_mut(&self.proxy_id) {
            entry.holds_current = Some((sent, current));
        }
    }
}

impl Drop for ProxyWatchGuard {
    fn drop(&mut self) {
        let mut entries = self.proxies.lock();
        if let Some(entry) = entries.by_id.get_mut(&self.proxy_id) {
            entry.watches = entry.watches.saturating_sub(1);
            entry.last_seen = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen<'a>(proxy_id: &'a str, identity: &'a SpiffeId) -> Seen<'a> {
        Seen {
            proxy_id,
            identity,
            peer: "127.0.0.1:5000".parse().unwrap(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn converges_when_every_connected_proxy_applied_the_version() {
        let proxies = Proxies::new();
        let orders = SpiffeId::from_short("cluster.local", "shop/orders").unwrap();
        let payments = SpiffeId::from_short("cluster.local", "shop/payments").unwrap();
        assert!(proxies.status(7, vec![]).converged, "no proxies: converged");

        let key = ServiceKey::new("shop", "orders");
        let a = proxies
            .watch_opened(seen("a", &orders), Some(key.clone()))
            .unwrap();
        let status = proxies.status(7, vec![]);
        assert!(!status.converged, "a has reported nothing yet");
        assert_eq!(status.proxies[0].service.as_deref(), Some("shop/orders"));
        assert_eq!(status.proxies[0].address, "127.0.0.1:5000");

        proxies.heartbeat(seen("a", &orders), 7, None).unwrap();
        proxies
            .heartbeat(
                seen("b", &payments),
                6,
                Some((ServiceKey::new("shop", "payments"), "10.0.0.2:4143".into())),
            )
            .unwrap();
        let status = proxies.status(7, vec![]);
        assert!(status.converged, "b is behind but not connected");
        assert_eq!(status.proxies[1].address, "10.0.0.2:4143");
        assert_eq!(status.proxies[1].service.as_deref(), Some("shop/payments"));
        assert!(!status.proxies[1].connected);

        let b = proxies.watch_opened(seen("b", &payments), None).unwrap();
        assert!(!proxies.status(7, vec![]).converged);
        proxies
            .heartbeat(
                seen("b", &payments),
                7,
                Some((ServiceKey::new("shop", "payments"), "10.0.0.2:4143".into())),
            )
            .unwrap();
        let status = proxies.status(7, vec!["x.yaml:1: bad".into()]);
        assert!(status.converged);
        assert_eq!(status.config_errors, ["x.yaml:1: bad"]);

        // Disconnected proxies are kept for 5 minutes, then forgotten.
        drop(a);
        tokio::time::sleep(Duration::from_secs(60)).await;
        let status = proxies.status(7, vec![]);
        assert_eq!(status.proxies.len(), 2);
        assert_eq!(status.proxies[0].last_seen_ms_ago, 60_000);
        assert!(!status.proxies[0].connected);
        tokio::time::sleep(FORGET_AFTER).await;
        let status = proxies.status(8, vec![]);
        let ids: Vec<&str> = status.proxies.iter().map(|p| p.proxy_id.as_str()).collect();
        assert_eq!(ids, ["b"], "b is still connected");
        assert!(!status.converged);
        drop(b);
    }

    #[tokio::test(start_paused = true)]
    async fn a_proxy_sent_no_line_for_an_unrelated_change_counts_as_current() {
        let proxies = Proxies::new();
        let orders = SpiffeId::from_short("cluster.local", "shop/orders").unwrap();
        let watch = proxies.watch_opened(seen("a", &orders), None).unwrap();
        proxies.heartbeat(seen("a", &orders), 7, None).unwrap();
        assert!(!proxies.status(8, vec![]).converged);
        // Version 8 changed only another service's ServerPolicy.
        watch.holds_current(7, 8);
        assert!(proxies.status(8, vec![]).converged);
        assert!(!proxies.status(9, vec![]).converged);
        proxies.heartbeat(seen("a", &orders), 6, None).unwrap();
        assert!(!proxies.status(8, vec![]).converged, "it has not applied 7");
    }

    #[tokio::test(start_paused = true)]
    async fn an_identity_keeps_at_most_its_cap_of_proxies() {
        let proxies = Proxies::with_max_per_identity(2);
        let orders = SpiffeId::from_short("cluster.local", "shop/orders").unwrap();
        let payments = SpiffeId::from_short("cluster.local", "shop/payments").unwrap();
        proxies.heartbeat(seen("a", &orders), 1, None).unwrap();
        let b = proxies.watch_opened(seen("b", &orders), None).unwrap();
        let err = proxies.admit(&seen("c", &orders)).unwrap_err();
        assert_eq!(err.max, 2);
        assert!(proxies.watch_opened(seen("c", &orders), None).is_err());
        // Known proxies go on; other identities have their own room.
        proxies.heartbeat(seen("a", &orders), 2, None).unwrap();
        proxies.admit(&seen("p", &payments)).unwrap();
        // A proxy id moving to another identity leaves room behind.
        proxies.admit(&seen("a", &payments)).unwrap();
        proxies.admit(&seen("c", &orders)).unwrap();
        assert!(proxies.admit(&seen("d", &orders)).is_err());
        assert_eq!(proxies.len(), 4);
        // Forgotten ones make room: c once silent for FORGET_AFTER; b stays, connected.
        tokio::time::sleep(FORGET_AFTER).await;
        proxies.admit(&seen("d", &orders)).unwrap();
        assert!(proxies.admit(&seen("e", &orders)).is_err(), "b and d");
        drop(b);
    }
}
