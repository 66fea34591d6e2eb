//! Resilience counters of one destination service, held by its `ServiceMetrics` (resolved
//! once per target, like every metric here) and rendered with the proxy's /metrics.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::circuit::CircuitMetrics;

#[derive(Debug, Default)]
pub(crate) struct ResilienceCounters {
    pub retries: AtomicU64,
    pub budget_exhausted: AtomicU64,
    pub bulkhead_rejected: AtomicU64,
    /// Shared with the circuits of the service's endpoints.
    pub circuits: Arc<CircuitMetrics>,
}

impl ResilienceCounters {
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}

/// Metric name, help text, and how to read it.
type Family = (&'static str, &'static str, fn(&ResilienceCounters) -> u64);

/// Renders the counters of the outbound services (`name.namespace` labels).
pub(crate) fn render<'a>(
    out: &mut String,
    services: impl Iterator<Item = (&'a str, &'a ResilienceCounters)> + Clone,
) {
    let families: [Family; 3] = [
        (
            "retries_total",
            "Retries sent (tries after the first).",
            |c| c.retries.load(Relaxed),
        ),
        (
            "retry_budget_exhausted_total",
            "Retries wanted but refused by the retry budget.",
            |c| c.budget_exhausted.load(Relaxed),
        ),
        (
            "bulkhead_rejected_total",
            "Requests refused by the bulkhead (full, or queue timeout).",
            |c| c.bulkhead_rejected.load(Relaxed),
        ),
    ];
    for (name, help, value) in families {
        let _ = writeln!(out, "# HELP outrigger_{name} {help}");
        let _ = writeln!(out, "# TYPE outrigger_{name} counter");
        for (service, counters) in services.clone() {
            let _ = writeln!(
                out,
                "outrigger_{name}{{service=\"{service}\"}} {}",
                value(counters)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP outrigger_circuit_ejections_total Breaker trips: detected, and enforced (within maxEjectedPercent)."
    );
    let _ = writeln!(out, "# TYPE outrigger_circuit_ejections_total counter");
    for (service, counters) in services {
        for (kind, value) in [
            ("detected", &counters.circuits.detected),
            ("enforced", &counters.circuits.enforced),
        ] {
            let _ = writeln!(
                out,
                "outrigger_circuit_ejections_total{{service=\"{service}\",kind=\"{kind}\"}} {}",
                value.load(Relaxed)
            );
        }
    }
}
