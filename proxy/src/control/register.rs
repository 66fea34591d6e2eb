//! Heartbeats to the control plane (`POST /v1/register`): every proxy reports the config
//! version it has applied; a proxy in front of an app also registers that instance with
//! its health, so that it joins the service's endpoints while healthy and leaves them
//! when it is not, or when the heartbeats stop. A heartbeat goes out at once when the
//! app's health or the applied version changes, and a last one, unhealthy, on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use outrigger_api::{Heartbeat, HeartbeatResponse, Instance};
use tokio::sync::watch;

use super::ControlPlaneClient;
use crate::config::qualify_service;
use crate::identity::Identity;
use crate::serve::Drain;

/// What this proxy registers, fixed at start.
pub(crate) struct Registration {
    pub proxy_id: String,
    /// `name` or `namespace/name` of the MeshService whose instance this is, and the
    /// inbound address peers use; `None` for a proxy with no app to offer.
    pub instance: Option<(String, SocketAddr)>,
    pub interval: Duration,
}

pub(crate) async fn heartbeat(
    cp: Arc<ControlPlaneClient>,
    identity: Arc<Identity>,
    registration: Registration,
    mut healthy: watch::Receiver<bool>,
    mut applied: watch::Receiver<u64>,
    mut drain: Drain,
) {
    // Shutting down before the first certificate: nothing was registered.
    tokio::select! {
        () = identity.wait_certified() => {}
        () = drain.signaled() => return,
    }
    // A bare service name is in the namespace of the identity we were issued.
    let namespace = identity.id().map(|id| id.namespace()).unwrap_or("default");
    let instance = registration.instance.as_ref().map(|(service, address)| {
        let (namespace, name) = qualify_service(service, namespace);
        (namespace, name, *address)
    });
    let beat = |healthy: bool, applied_version: u64| Heartbeat {
        proxy_id: registration.proxy_id.clone(),
        applied_version,
        instance: instance
            .as_ref()
            .map(|(namespace, name, address)| Instance {
                service: name.clone(),
                namespace: namespace.clone(),
                address: address.to_string(),
                healthy,
            }),
    };
    let mut failing = false;
    loop {
        let current = beat(*healthy.borrow_and_update(), *applied.borrow_and_update());
        match cp
            .json::<HeartbeatResponse>(Method::POST, "/v1/register", &current, true)
            .await
        {
            Ok(_) if failing => {
                failing = false;
                tracing::info!("heartbeats to the control plane resumed");
            }
            Ok(_) => {}
            // Once per outage, not every interval: the watch logs the outage too.
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "heartbeat failed; will keep trying");
            }
            Err(error) => tracing::debug!(%error, "heartbeat failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(registration.interval) => {}
            _ = healthy.changed() => {}
            _ = applied.changed() => {}
            () = drain.signaled() => break,
        }
    }
    // Leave the endpoint set before the listeners finish draining.
    if instance.is_some() {
        let last = beat(false, *applied.borrow());
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            cp.json::<HeartbeatResponse>(Method::POST, "/v1/register", &last, true),
        )
        .await;
    }
}

/// A name for this proxy process that is unique and readable in `outrigger status`:
/// host name (the pod's, in Kubernetes) and process id.
pub(crate) fn proxy_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "proxy".to_string());
    format!("{host}:{}", std::process::id())
}
