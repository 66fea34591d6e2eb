//! What the stats shipper (`control/stats.rs`) reads from a service's metrics: its
//! request and success counts and a copy of its latency histogram, cumulative since the
//! handle was made. The shipper subtracts its previous copy to get an interval's delta.

use std::sync::{Arc, Weak};

use hdrhistogram::Histogram;

use super::status::{KNOWN_STATUSES, STATUS_SLOTS};
use super::{Direction, ProxyMetrics, RequestMetrics, ServiceMetrics};

/// Requests, successes and latencies (µs) counted so far.
#[derive(Clone, Debug)]
pub(crate) struct Tally {
    pub requests: u64,
    /// Neither a 5xx, nor a response the proxy made, nor a gRPC status other than OK.
    pub successes: u64,
    pub latency: Histogram<u32>,
}

impl RequestMetrics {
    fn tally(&self) -> Tally {
        let count = |counter: &std::sync::OnceLock<
            prometheus_client::metrics::counter::Counter,
        >| { counter.get().map_or(0, |c| c.get()) };
        let answered: u64 = self.statuses.iter().map(count).sum();
        let server_errors: u64 = (0..STATUS_SLOTS)
            .filter(|slot| is_server_error(*slot))
            .map(|slot| count(&self.statuses[slot]))
            .sum();
        let made_by_proxy: u64 = self.errors.iter().map(count).sum();
        let grpc_failed: u64 = self
            .grpc
            .counts()
            .filter(|(status, _)| *status != "OK")
            .map(|(_, n)| n)
            .sum();
        let requests = answered + made_by_proxy;
        let latency = self
            .latency
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|e| e.into_inner().clone());
        Tally {
            requests,
            successes: requests.saturating_sub(server_errors + made_by_proxy + grpc_failed),
            latency,
        }
    }
}

impl ServiceMetrics {
    pub(crate) fn direction(&self) -> Direction {
        self.labels.direction
    }

    /// Each caller's requests so far (inbound: by verified identity, "" for plaintext
    /// callers), cumulative since the handle was made.
    pub(crate) fn caller_tallies(&self) -> Vec<(String, Tally)> {
        let mut tallies = vec![(String::new(), self.requests.tally())];
        for edge in self.edges.load().iter() {
            tallies.push((edge.edge.caller.clone(), edge.tally()));
        }
        tallies
    }

    /// The service's requests on every edge (callers, named routes) together.
    pub(crate) fn tally(&self) -> Tally {
        let mut total = self.requests.tally();
        for edge in self.edges.load().iter() {
            let more = edge.tally();
            total.requests += more.requests;
            total.successes += more.successes;
            // Same bounds on both sides: adding cannot fail.
            let _ = total.latency.add(&more.latency);
        }
        total
    }
}

/// Whether a status slot holds 5xx answers (a known code of 500 and up, or the 5xx class).
fn is_server_error(slot: usize) -> bool {
    match KNOWN_STATUSES.get(slot) {
        Some(code) => *code >= 500,
        None => slot - KNOWN_STATUSES.len() == 4,
    }
}

impl ProxyMetrics {
    /// The services someone still holds a handle for. The handles are upgraded after
    /// the lock is let go: one dropped here must not run its `Drop` (which takes that
    /// lock) while it is held.
    pub(crate) fn live_services(&self) -> Vec<Arc<ServiceMetrics>> {
        let handles: Vec<Weak<ServiceMetrics>> = self
            .shared
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(_, handle)| handle.clone())
            .collect();
        handles.iter().filter_map(Weak::upgrade).collect()
    }
}

impl Tally {
    /// The histogram in the wire form the control plane reads: V2, base64.
    pub(crate) fn latency_base64(&self) -> String {
        use base64::Engine as _;
        use hdrhistogram::serialization::{Serializer as _, V2Serializer};
        let mut bytes = Vec::new();
        // Writing into a Vec fails only if the histogram cannot be described, which a
        // histogram built with static bounds always can.
        if let Err(error) = V2Serializer::new().serialize(&self.latency, &mut bytes) {
            tracing::warn!(?error, "cannot serialize a latency histogram");
            bytes.clear();
        }
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }
}

impl ProxyMetrics {
    /// Admin `/stats`: every outbound service's counts since its handle was made, with
    /// its latency histogram in the shipped form; what the control plane has been sent,
    /// summed (tests compare the two).
    pub(crate) fn tallies_json(&self) -> serde_json::Value {
        let services: Vec<_> = self
            .live_services()
            .iter()
            .filter(|m| m.direction() == Direction::Outbound)
            .map(|m| {
                let tally = m.tally();
                serde_json::json!({
                    "direction": m.direction().as_str(),
                    "service": m.service(),
                    "requests": tally.requests,
                    "successes": tally.successes,
                    "latency": tally.latency_base64(),
                })
            })
            .collect();
        serde_json::json!({ "services": services })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn successes_leave_out_5xx_and_mesh_errors() {
        let registry = ProxyMetrics::new();
        let m = registry.service(Direction::Outbound, "payments.shop");
        m.record_status(200, Duration::from_micros(100));
        m.record_status(404, Duration::from_micros(100));
        m.record_status(503, Duration::from_micros(100));
        m.record_status(599, Duration::from_micros(100));
        m.record_status(555, Duration::from_micros(100));
        m.record_error(ErrorCode::Timeout, Duration::from_millis(5));
        let tally = m.tally();
        assert_eq!((tally.requests, tally.successes), (6, 2));
        assert_eq!(tally.latency.len(), 6);
        assert_eq!(registry.live_services().len(), 1);
        assert_eq!(m.direction(), Direction::Outbound);
    }
}
