//! Inbound calls split by caller: one [`EdgeMetrics`] per verified caller identity (and
//! one for plaintext callers), so that the control plane sees each caller→callee edge
//! from the callee's side too. A connection resolves its caller's handle once; a request
//! then touches two atomics and one uncontended histogram lock. Only the stats shipper
//! reads these, and it takes (and resets) what was counted since its last visit.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use http::{HeaderMap, StatusCode};

use super::LATENCY_MAX_MICROS;
use super::snapshot::Tally;

/// Callers tracked at most; the calls of any more are left out of the shipped stats
/// (still counted in `/metrics`) rather than letting memory grow with the callers.
pub(crate) const MAX_CALLERS: usize = 256;

#[derive(Debug)]
pub(crate) struct EdgeMetrics {
    requests: AtomicU64,
    successes: AtomicU64,
    latency: Mutex<Histogram<u32>>,
}

impl EdgeMetrics {
    fn new() -> Self {
        EdgeMetrics {
            requests: AtomicU64::new(0),
            successes: AtomicU64::new(0),
            latency: Mutex::new(
                Histogram::new_with_bounds(1, LATENCY_MAX_MICROS, 3)
                    .expect("static histogram bounds"),
            ),
        }
    }

    /// Counts one answer: a success unless a 5xx, made by the proxy, or a gRPC failure
    /// in the headers (a trailers-only answer).
    pub(crate) fn record(&self, status: StatusCode, headers: &HeaderMap, elapsed: Duration) {
        let failed = status.is_server_error()
            || headers.contains_key(crate::ERROR_HEADER)
            || headers.get("grpc-status").is_some_and(|s| s != "0");
        self.requests.fetch_add(1, Relaxed);
        if !failed {
            self.successes.fetch_add(1, Relaxed);
        }
        let micros = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .saturating_record(micros);
    }

    /// What was counted since the last call, and starts again from zero.
    fn take(&self) -> Tally {
        let mut latency = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
        let taken = latency.clone();
        latency.reset();
        drop(latency);
        Tally {
            requests: self.requests.swap(0, Relaxed),
            successes: self.successes.swap(0, Relaxed),
            latency: taken,
        }
    }
}

/// A caller's SPIFFE id (`None`: a plaintext, permissive caller) and its counts.
type Edge = (Option<Arc<str>>, Arc<EdgeMetrics>);

/// The inbound side's callers.
#[derive(Debug, Default)]
pub(crate) struct InboundEdges {
    edges: Mutex<Vec<Edge>>,
}

impl InboundEdges {
    /// The handle for `caller`; `None` when [`MAX_CALLERS`] are tracked already.
    pub(crate) fn for_caller(&self, caller: Option<&str>) -> Option<Arc<EdgeMetrics>> {
        let mut edges = self.edges.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, found)) = edges.iter().find(|(id, _)| id.as_deref() == caller) {
            return Some(found.clone());
        }
        if edges.len() >= MAX_CALLERS {
            return None;
        }
        let created = Arc::new(EdgeMetrics::new());
        edges.push((caller.map(Arc::from), created.clone()));
        Some(created)
    }

    /// Each caller's counts since the last call (callers with none left out). A caller no
    /// connection holds any more is forgotten once its last counts are taken.
    pub(crate) fn take(&self) -> Vec<(Option<Arc<str>>, Tally)> {
        let mut edges = self.edges.lock().unwrap_or_else(PoisonError::into_inner);
        let taken = edges
            .iter()
            .map(|(caller, edge)| (caller.clone(), edge.take()))
            .filter(|(_, tally)| tally.requests > 0)
            .collect();
        edges.retain(|(_, edge)| Arc::strong_count(edge) > 1);
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_caller_and_resets_when_taken() {
        let edges = InboundEdges::default();
        let orders = edges
            .for_caller(Some("spiffe://cluster.local/ns/shop/sa/orders"))
            .unwrap();
        let plain = edges.for_caller(None).unwrap();
        let ok = HeaderMap::new();
        let mut grpc_failed = HeaderMap::new();
        grpc_failed.insert("grpc-status", "14".parse().unwrap());
        orders.record(StatusCode::OK, &ok, Duration::from_millis(2));
        orders.record(StatusCode::BAD_GATEWAY, &ok, Duration::from_millis(3));
        orders.record(StatusCode::OK, &grpc_failed, Duration::from_millis(4));
        plain.record(StatusCode::NOT_FOUND, &ok, Duration::from_millis(1));
        let again = edges
            .for_caller(Some("spiffe://cluster.local/ns/shop/sa/orders"))
            .unwrap();
        assert!(Arc::ptr_eq(&orders, &again));
        let mut taken = edges.take();
        taken.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(taken.len(), 2);
        assert_eq!(taken[0].0, None);
        assert_eq!((taken[0].1.requests, taken[0].1.successes), (1, 1));
        assert_eq!((taken[1].1.requests, taken[1].1.successes), (3, 1));
        assert_eq!(taken[1].1.latency.len(), 3);
        assert!(edges.take().is_empty(), "reset once taken");
        drop((orders, again, plain));
        edges.take();
        assert!(
            edges.edges.lock().unwrap().is_empty(),
            "unheld callers forgotten"
        );
    }

    #[test]
    fn callers_are_capped() {
        let edges = InboundEdges::default();
        let held: Vec<_> = (0..MAX_CALLERS)
            .map(|i| edges.for_caller(Some(&format!("c{i}"))).unwrap())
            .collect();
        assert!(edges.for_caller(Some("one-too-many")).is_none());
        assert!(edges.for_caller(Some("c0")).is_some());
        drop(held);
    }
}
