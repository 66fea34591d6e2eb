//! Traffic shifting: a request to a service whose TrafficPolicy (or route) names
//! backends goes to one of them, chosen per request by weight. A backend is a service of
//! its own, with its own identity check, balancer, breakers and bulkhead; the request's
//! route, deadline and retries stay the parent's. A backend whose every endpoint is
//! ejected gives its share to the others, and one that is not in the mesh gets none.

use std::sync::Arc;

use tokio::time::Instant;

use super::target::Target;
use super::targets::Targets;
use crate::mesh::MeshTable;
use crate::resilience::policy::WeightedBackend;

/// The target that serves one request: a backend chosen by weight among those that can
/// take it. When none can, the first one with weight (its breakers, or its absence from
/// the mesh, then give the answer), or the parent if even that is not in the mesh.
pub(crate) fn choose(
    backends: &[WeightedBackend],
    parent: &Arc<Target>,
    table: &MeshTable,
    targets: &Targets,
    now: Instant,
) -> Arc<Target> {
    let usable = |backend: &WeightedBackend| {
        backend.weight > 0
            && (backend.key.as_ref() == parent.name() && !all_ejected(parent)
                || table.get(&backend.key).is_some()
                    && targets.peek(&backend.key).is_none_or(|t| !all_ejected(&t)))
    };
    let total: u64 = backends
        .iter()
        .filter(|b| usable(b))
        .map(|b| u64::from(b.weight))
        .sum();
    let chosen = if total > 0 {
        let mut ticket = fastrand::u64(..total);
        backends.iter().filter(|b| usable(b)).find(|b| {
            let weight = u64::from(b.weight);
            if ticket < weight {
                return true;
            }
            ticket -= weight;
            false
        })
    } else {
        backends.iter().find(|b| b.weight > 0)
    };
    let Some(chosen) = chosen else {
        return parent.clone();
    };
    if chosen.key.as_ref() == parent.name() {
        return parent.clone();
    }
    match table.get(&chosen.key) {
        Some(entry) => targets.get(entry, now),
        None => parent.clone(),
    }
}

/// Whether a target has endpoints and every one's breaker is open.
fn all_ejected(target: &Target) -> bool {
    !target.endpoints.is_empty() && target.endpoints.iter().all(|e| !e.circuit().is_usable())
}
