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

/// Why a registration was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The instance is malformed (400).
    #[error("{0}")]
    Invalid(String),
    /// The caller may not register it (403).
    #[error("{0}")]
    Forbidden(String),
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

#[derive(Debug)]
pub struct Registry {
    ttl: Duration,
    publisher: SnapshotPublisher,
    // A std mutex: held to update and publish (no await), so changes publish in order.
    by_proxy: Mutex<HashMap<String, Registration>>,
    /// Wakes the expiry task when a registration appears.
    added: Notify,
}

impl Registry {
    pub fn new(ttl: Duration, publisher: SnapshotPublisher) -> Arc<Self> {
        Arc::new(Registry {
            ttl,
            publisher,
            by_proxy: Mutex::new(HashMap::new()),
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
        let mut by_proxy = self.lock();
        let before = by_proxy.get(proxy_id).cloned();
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
                    by_proxy.remove(proxy_id);
                    info!(proxy = proxy_id, "registration withdrawn");
                }
                let version = self.publish(&by_proxy);
                return checked.map(|_| version);
            }
        };
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
        by_proxy.insert(proxy_id.to_string(), registration);
        Ok(if changed {
            self.publish(&by_proxy)
        } else {
            None
        })
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
        let mut by_proxy = self.lock();
        let mut changed = false;
        by_proxy.retain(|proxy, r| {
            let keep = r.expires_at > now;
            if !keep {
                info!(proxy = %proxy, service = %r.service, address = %r.address, "registration expired: no heartbeat");
                changed |= r.healthy;
            }
            keep
        });
        if changed {
            self.publish(&by_proxy)
        } else {
            None
        }
    }

    /// Healthy registered instances.
    pub fn healthy_count(&self) -> usize {
        self.lock().values().filter(|r| r.healthy).count()
    }

    /// Expires registrations as their time comes, until `stopping`.
    pub async fn run_expiry(self: Arc<Self>, mut stopping: watch::Receiver<bool>) {
        loop {
            let next = self.lock().values().map(|r| r.expires_at).min();
            tokio::select! {
                () = sleep_until(next) => {
                    self.expire(Instant::now());
                }
                () = self.added.notified() => {}
                _ = stopping.wait_for(|stop| *stop) => return,
            }
        }
    }

    fn publish(&self, by_proxy: &HashMap<String, Registration>) -> Option<u64> {
        let mut registered = Registered::new();
        for (service, endpoint) in by_proxy.values().filter_map(Registration::endpoint) {
            registered
                .entry(service.clone())
                .or_default()
                .insert(endpoint);
        }
        self.publisher.publish_registered(registered)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Registration>> {
        self.by_proxy.lock().unwrap_or_else(PoisonError::into_inner)
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
