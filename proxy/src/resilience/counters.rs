//! Resilience counters of one destination service, held by its `ServiceMetrics` (resolved
//! once per target, like every metric here): retries, budget refusals, bulkhead
//! refusals, and breaker trips.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;

use super::circuit::CircuitMetrics;

#[derive(Debug, Default)]
pub(crate) struct ResilienceCounters {
    pub retries: Counter,
    pub budget_exhausted: Counter,
    pub bulkhead_rejected: Counter,
    /// Shared with the circuits of the service's endpoints.
    pub circuits: Arc<CircuitMetrics>,
}

impl ResilienceCounters {
    pub(crate) fn inc(counter: &Counter) {
        counter.inc();
    }
}
