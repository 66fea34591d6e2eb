//! The breakers' state for people and for Prometheus: admin `/circuits` (endpoint, state,
//! failures, ejected until, why) and the `outrigger_circuit_state` gauge.

use std::sync::Arc;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::labels::EndpointLabels;
use crate::outbound::Target;

/// `{"services": [{"service", "ejected", "endpoints": [CircuitReport...]}]}`.
pub(crate) fn json(targets: &[Arc<Target>]) -> serde_json::Value {
    let services: Vec<_> = targets
        .iter()
        .map(|target| {
            let endpoints: Vec<_> = target
                .endpoints
                .iter()
                .map(|e| e.circuit().report())
                .collect();
            serde_json::json!({
                "service": target.metrics.service(),
                "endpoints": endpoints,
            })
        })
        .collect();
    serde_json::json!({ "services": services })
}

/// `outrigger_circuit_state{service,endpoint}`: 0 closed, 1 open, 2 half-open. Read from
/// the breakers at scrape time, into a registry made for the scrape.
pub(crate) fn registry(targets: &[Arc<Target>]) -> Registry {
    let states: Family<EndpointLabels, Gauge> = Family::default();
    for target in targets {
        for endpoint in &target.endpoints {
            let report = endpoint.circuit().report();
            let state = match report.state {
                "open" => 1,
                "half-open" => 2,
                _ => 0,
            };
            states
                .get_or_create(&EndpointLabels {
                    service: target.metrics.service().to_string(),
                    endpoint: report.endpoint,
                })
                .set(state);
        }
    }
    let mut registry = Registry::with_prefix("outrigger");
    registry.register(
        "circuit_state",
        "Circuit breaker state per endpoint: 0 closed, 1 open, 2 half-open",
        states,
    );
    registry
}
