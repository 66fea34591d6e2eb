//! The breakers' state for people and for Prometheus: admin `/circuits` (endpoint, state,
//! failures, ejected until, why) and the `outrigger_circuit_state` gauge.

use std::fmt::Write as _;

use std::sync::Arc;

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

/// `outrigger_circuit_state{service,endpoint}`: 0 closed, 1 open, 2 half-open.
pub(crate) fn render_state(out: &mut String, targets: &[Arc<Target>]) {
    let _ = writeln!(
        out,
        "# HELP outrigger_circuit_state Circuit breaker state per endpoint: 0 closed, 1 open, 2 half-open."
    );
    let _ = writeln!(out, "# TYPE outrigger_circuit_state gauge");
    for target in targets {
        for endpoint in &target.endpoints {
            let report = endpoint.circuit().report();
            let state = match report.state {
                "open" => 1,
                "half-open" => 2,
                _ => 0,
            };
            let _ = writeln!(
                out,
                "outrigger_circuit_state{{service=\"{}\",endpoint=\"{}\"}} {state}",
                target.metrics.service(),
                report.endpoint
            );
        }
    }
}
