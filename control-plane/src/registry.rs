//! The service registry: app instances registered by their sidecars (`POST /v1/register`).
//! A healthy instance is an endpoint of its service until its sidecar reports it unhealthy
//! or stops heartbeating for the registration TTL; a healthy heartbeat brings it back.
//! Every change of a service's endpoint set is published (a new version, pushed).
//!
//! Time is tokio's, so that expiry can be tested with paused time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use outrigger_api::Instance;
use outrigger_certs::SpiffeId;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::info;

use crate::policy::ServiceKey;
use crate::snapshot::{Registered, RegisteredEndpoint, SnapshotPublisher};

/// The default `--registration-ttl`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);
/// The default `--max-instances-per-service`: a registered instance costs a few hundred
/// bytes here and in every watcher's snapshot, pushed to every proxy of the mesh.
pub const DEFAULT_MAX_INSTANCES_PER_SERVICE: usize = 1_000;

/// Why a registration was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The instance is malformed (400).
    #[error("{0}")]
    Invalid(String),
    /// The caller may not register it (403).
    #[error("{0}")]
    Forbidden(String),
    /// Its service has `--max-instances-per-service` registrations already (429).
    #[error("{0}")]
    Full(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Registration {
    service: ServiceKey,
    address: String,
    identity: String,
    healthy: bool,
    expires_at: Instant,
}

impl Registration {
    /// What it contributes to the endpoint sets (the expiry aside).
    fn endpoint(&self) -> Option<(&ServiceKey, RegisteredEndpoint)> {
        self.healthy.then(|| {
            (
                &self.service,
                RegisteredEndpoint {
                    address: self.address.clone(),
                    identity: self.identity.clone(),
                },
            )
        })
    }
}

/// The registrations, by proxy id, and how many each service has (what the cap counts,
/// healthy or not: an unhealthy one takes as much memory).
#[derive(Debug, Default)]
struct Entries {
    by_proxy: HashMap<String, Registration>,
    per_service: HashMap<ServiceKey, usize>,
}

impl Entries {
    fn get(&self, proxy: &str) -> Option<&Registration> {
        self.by_proxy.get(proxy)
    }

    fn count(&self, service: &ServiceKey) -> usize {
        self.per_service.get(service).copied().unwrap_or(0)
    }

    fn insert(&mut self, proxy: String, registration: Registration) {
        *self
            .per_service
            .entry(registration.service.clone())
            .or_default() += 1;
        if let Some(old) = self.by_proxy.insert(proxy, registration) {
            self.uncount(&old.service);
        }
    }

    fn remove(&mut self, proxy: &str) -> Option<Registration> {
        let removed = self.by_proxy.remove(proxy)?;
        self.uncount(&removed.service);
        Some(removed)
    }

    /// Keeps the registrations `keep` says to; returns whether a healthy one left.
    fn retain(&mut self, mut keep: impl FnMut(&str, &Registration) -> bool) -> bool {
        let mut healthy_left = false;
        let mut left = Vec::new();
        self.by_proxy.retain(|proxy, r| {
            let kept = keep(proxy, r);
            if !kept {
                healthy_left |= r.healthy;
                left.push(r.service.clone());
            }
            kept
        });
        for service in left {
            self.uncount(&service);
        }
        healthy_left
    }

    fn uncount(&mut self, service: &ServiceKey) {
        if let Some(n) = self.per_service.get_mut(service) {
            *n -= 1;
            if *n == 0 {
                self.per_service.remove(service);
            }
        }
    }
}

#[derive(Debug)]
pub struct Registry {
    ttl: Duration,
    max_per_service: usize,
    publisher: SnapshotPublisher,
    // A std mutex: held to update and publish (no await), so changes publish in order.
    entries: Mutex<Entries>,
    /// Wakes the expiry task when a registration appears.
    added: Notify,
}

impl Registry {
    /// A registry whose entries live `ttl` without a heartbeat, at most `max_per_service`
    /// of them for one service.
    pub fn new(ttl: Duration, max_per_service: usize, publisher: SnapshotPublisher) -> Arc<Self> {
        Arc::new(Registry {
            ttl,
            max_per_service,
            publisher,
            entries: Mutex::new(Entries::default()),
            added: Notify::new(),
        })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A heartbeat from `proxy_id`, whose certificate says `identity`: registers, renews,
    /// or (with no instance) withdraws its instance. Returns the new config version if
    /// the endpoint sets changed.
    pub fn heartbeat(
        &self,
        proxy_id: &str,
        identity: &SpiffeId,
        instance: Option<&Instance>,
    ) -> Result<Option<u64>, RegisterError> {
        let checked = instance.map(|i| self.check(identity, i)).transpose();
        let mut entries = self.lock();
        let before = entries.get(proxy_id).cloned();
        let registration = match checked {
            Ok(Some((service, address))) => Registration {
                service,
                address,
                identity: identity.to_string(),
                healthy: instance.is_some_and(|i| i.healthy),
                expires_at: Instant::now() + self.ttl,
            },
            Ok(None) | Err(_) => {
                // No instance, or one it may not register: it has none any more.
                if before.is_some() {
                    entries.remove(proxy_id);
                    info!(proxy = proxy_id, "registration withdrawn");
                }
                let version = self.publish(&entries);
                return checked.map(|_| version);
            }
        };
        // A renewal always passes; a new instance of a full service waits for one to leave.
        let joins = before
            .as_ref()
            .is_none_or(|b| b.service != registration.service);
        if joins && entries.count(&registration.service) >= self.max_per_service {
            return Err(RegisterError::Full(format!(
                "MeshService {} already has {} registered instances, the most \
                 --max-instances-per-service allows: this one is refused until one leaves",
                registration.service, self.max_per_service
            )));
        }
        let changed = before.as_ref().map(Registration::endpoint) != Some(registration.endpoint());
        if before.is_none() {
            self.added.notify_one();
        }
        if changed {
            info!(
                proxy = proxy_id,
                service = %registration.service,
                address = %registration.address,
                healthy = registration.healthy,
                "instance {}",
                if registration.healthy { "registered" } else { "unhealthy: removed from the endpoints" }
            );
        }
        entries.insert(proxy_id.to_string(), registration);
        Ok(if changed {
            self.publish(&entries)
        } else {
            None
        })
    }

    /// Withdraws every instance registered by `identity` (it was revoked); returns the
    /// new version if that changed the endpoints.
    pub fn withdraw_identity(&self, identity: &str) -> Option<u64> {
        let mut entries = self.lock();
        let changed = entries.retain(|proxy, r| {
            let keep = r.identity != identity;
            if !keep {
                info!(proxy = %proxy, service = %r.service, address = %r.address, "registration withdrawn: identity revoked");
            }
            keep
        });
        if changed {
            self.publish(&entries)
        } else {
            None
        }
    }

    /// The instance's service and normalised address, if `identity` may register it.
    fn check(
        &self,
        identity: &SpiffeId,
        instance: &Instance,
    ) -> Result<(ServiceKey, String), RegisterError> {
        let address: SocketAddr = instance.address.parse().map_err(|_| {
            RegisterError::Invalid(format!(
                "instance.address {:?} is not a socket address (ip:port)",
                instance.address
            ))
        })?;
        if address.ip().is_unspecified() || address.port() == 0 {
            return Err(RegisterError::Invalid(format!(
                "instance.address {address} cannot be reached by peers (give the IP and port they connect to)"
            )));
        }
        let key = ServiceKey::new(&instance.namespace, &instance.service);
        let config = self.publisher.current();
        let Some(service) = config.service(&key) else {
            return Err(RegisterError::Forbidden(format!(
                "no MeshService {key}: an instance can only join a service defined in the policy files"
            )));
        };
        if service.identity != identity.as_str() {
            return Err(RegisterError::Forbidden(format!(
                "MeshService {key} has identity {}, not the caller's {identity}",
                service.identity
            )));
        }
        Ok((key, address.to_string()))
    }

    /// Drops the registrations expired at `now`; returns the new version if that changed
    /// the endpoints.
    pub fn expire(&self, now: Instant) -> Option<u64> {
        let mut entries = self.lock();
        let changed = entries.retain(|proxy, r| {
            let keep = r.expires_at > now;
            if !keep {
                info!(proxy = %proxy, service = %r.service, address = %r.address, "registration expired: no heartbeat");
            }
            keep
        });
        if changed {
            self.publish(&entries)
        } else {
            None
        }
    }

    /// Healthy registered instances.
    pub fn healthy_count(&self) -> usize {
        self.lock().by_proxy.values().filter(|r| r.healthy).count()
    }

    /// Registered instances of `service`, healthy or not (what the cap counts).
    pub fn count(&self, service: &ServiceKey) -> usize {
        self.lock().count(service)
    }

    /// Expires registrations as their time comes, until `stopping`.
    pub async fn run_expiry(self: Arc<Self>, mut stopping: watch::Receiver<bool>) {
        loop {
            let next = self.lock().by_proxy.values().map(|r| r.expires_at).min();
            tokio::select! {
                () = sleep_until(next) => {
                    self.expire(Instant::now());
                }
                () = self.added.notified() => {}
                _ = stopping.wait_for(|stop| *stop) => return,
            }
        }
    }

    fn publish(&self, entries: &Entries) -> Option<u64> {
        let mut registered = Registered::new();
        for (service, endpoint) in entries.by_proxy.values().filter_map(Registration::endpoint) {
            registered
                .entry(service.clone())
                .or_default()
                .insert(endpoint);
        }
        self.publisher.publish_registered(registered)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
