//! Writes convergence into the `status` of every MeshService, TrafficPolicy and
//! ServerPolicy, from the replica that holds the status Lease only (so that replicas
//! never fight over a field). Every [`INTERVAL`], the holder adds up its own counts and
//! its peers' ([`super::convergence`]) and patches the status of each object whose
//! status would change; an unchanged one is not written, so a quiet mesh causes no
//! writes at all, and a busy one at most one per object per interval.
//!
//! The patch is a server-side apply of the whole status by field manager
//! `outrigger-control-plane`: what it stops sending (an `endpoints` count that went
//! away) is removed, and nothing else in the object is touched.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Api, Client};
use outrigger_api::crd::{MeshServiceResource, ServerPolicyResource, TrafficPolicyResource};
use outrigger_api::status::{MeshServiceStatus, PolicyStatus, converged_text};
use tokio::sync::watch;
use tracing::{info, warn};

use super::convergence::{
    CustomKind, CustomObject, LocalConvergence, ReplicaConvergence, Summed, sum,
};
use super::peers::Peers;
use crate::policy::ServiceKey;

/// How often the holder looks for status to write.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// The field manager of the status this writes.
const MANAGER: &str = "outrigger-control-plane";

/// `(kind, namespace, name)`.
type ObjectId = (CustomKind, String, String);

/// Writes status, remembering what it wrote.
pub struct StatusWriter {
    client: Client,
    written: HashMap<ObjectId, serde_json::Value>,
}

/// What one round did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Round {
    pub patched: usize,
    pub unchanged: usize,
    pub failed: usize,
}

impl StatusWriter {
    pub fn new(client: Client) -> Self {
        StatusWriter {
            client,
            written: HashMap::new(),
        }
    }

    /// Forgets what was written: after a term without the Lease, another replica may
    /// have written since.
    pub fn forget(&mut self) {
        self.written.clear();
    }

    /// Writes the status of each object in `objects` that changed; `endpoints` gives a
    /// MeshService's ready instances as this replica serves them.
    pub async fn write(
        &mut self,
        objects: &[CustomObject],
        mine: &ReplicaConvergence,
        others: &[ReplicaConvergence],
        endpoints: impl Fn(&ServiceKey) -> Option<u32>,
    ) -> Round {
        let mut round = Round::default();
        let live: std::collections::HashSet<ObjectId> = objects.iter().map(id).collect();
        // Deleted objects need no memory.
        self.written.retain(|k, _| live.contains(k));
        for object in objects {
            let Some(summed) = sum(mine, others, &object.document_name()) else {
                continue;
            };
            let status = status(object, &summed, &endpoints);
            let key = id(object);
            if self.written.get(&key) == Some(&status) {
                round.unchanged += 1;
                continue;
            }
            match self.patch(object, &status).await {
                Ok(()) => {
                    self.written.insert(key, status);
                    round.patched += 1;
                }
                // Deleted since it was seen: the watch will drop it.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    let reason = match e {
                        kube::Error::Api(s) if s.code == 403 => {
                            format!("forbidden by RBAC (apply k8s/rbac.yaml): {}", s.message)
                        }
                        other => other.to_string(),
                    };
                    warn!("writing the status of {}: {reason}", object.document_name());
                    round.failed += 1;
                }
            }
        }
        round
    }

    async fn patch(
        &self,
        object: &CustomObject,
        status: &serde_json::Value,
    ) -> Result<(), kube::Error> {
        let resource = match object.kind {
            CustomKind::MeshService => ApiResource::erase::<MeshServiceResource>(&()),
            CustomKind::TrafficPolicy => ApiResource::erase::<TrafficPolicyResource>(&()),
            CustomKind::ServerPolicy => ApiResource::erase::<ServerPolicyResource>(&()),
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &object.namespace, &resource);
        let body = serde_json::json!({
            "apiVersion": resource.api_version,
            "kind": resource.kind,
            "status": status,
        });
        api.patch_status(
            &object.name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?;
        Ok(())
    }
}

fn id(object: &CustomObject) -> ObjectId {
    (object.kind, object.namespace.clone(), object.name.clone())
}

/// The status of `object`, as JSON in the CRD's form.
fn status(
    object: &CustomObject,
    summed: &Summed,
    endpoints: &impl Fn(&ServiceKey) -> Option<u32>,
) -> serde_json::Value {
    let converged = Some(converged_text(summed.converged, summed.proxies));
    let value = match object.kind {
        CustomKind::MeshService => serde_json::to_value(MeshServiceStatus {
            version: Some(summed.version),
            observed_generation: object.generation,
            proxies_converged: summed.converged,
            proxies: summed.proxies,
            converged,
            endpoints: endpoints(&ServiceKey::new(&object.namespace, &object.name)),
        }),
        CustomKind::TrafficPolicy | CustomKind::ServerPolicy => {
            serde_json::to_value(PolicyStatus {
                version: Some(summed.version),
                observed_generation: object.generation,
                proxies_converged: summed.converged,
                proxies: summed.proxies,
                converged,
            })
        }
    };
    value.expect("status types serialize")
}

/// While this replica holds the Lease (`leading`), writes status every [`INTERVAL`],
/// until `stopping`.
pub async fn run(
    mut writer: StatusWriter,
    local: Arc<LocalConvergence>,
    peers: Peers,
    mut leading: watch::Receiver<bool>,
    mut stopping: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            led = leading.wait_for(|l| *l) => if led.is_err() { return },
            _ = stopping.wait_for(|stop| *stop) => return,
        }
        // A new term: whatever the last holder wrote may differ from what this one did.
        writer.forget();
        while *leading.borrow() {
            // Only once every watch has listed: before that, counts are of a partial mesh.
            if local.feed.all_synced() {
                let mine = local.report();
                let others = peers.reports().await;
                let config = local.feed.publisher().current();
                let endpoints = |key: &ServiceKey| {
                    config
                        .service(key)
                        .map(|s| u32::try_from(s.endpoints.len()).unwrap_or(u32::MAX))
                };
                let objects = local.feed.custom_objects();
                let round = writer.write(&objects, &mine, &others, endpoints).await;
                if round.patched > 0 || round.failed > 0 {
                    info!(
                        patched = round.patched,
                        failed = round.failed,
                        replicas = others.len() + 1,
                        "wrote CRD status"
                    );
                }
            }
            tokio::select! {
                () = tokio::time::sleep(INTERVAL) => {}
                changed = leading.changed() => if changed.is_err() { return },
                _ = stopping.wait_for(|stop| *stop) => return,
            }
        }
    }
}
