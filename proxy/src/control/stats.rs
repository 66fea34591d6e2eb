//! Shipping statistics to the control plane (`POST /v1/stats`, mTLS) every interval
//! (`OUTRIGGER_STATS_INTERVAL`, 10 s): for each service this proxy calls, the interval's
//! requests, successes and latency histogram (client side), and for each caller of its
//! own service, the same (server side), plus each called service's circuit breakers,
//! bulkhead and retry-budget pressure. Histograms travel as HDR V2 (base64).
//!
//! Deltas: outbound services' metrics are cumulative (they feed `/metrics`), so the
//! shipper keeps the last copy it sent and subtracts it; inbound callers' counts exist
//! only for shipping and are reset when taken. A report that cannot be delivered is
//! dropped: the control plane shows a gap rather than a burst.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use http::Method;
use outrigger_api::{
    CircuitView, ResilienceReport, SeriesReport, Side, StatsAccepted, StatsReport,
};
use tokio::time::{Instant, MissedTickBehavior};

use super::ControlPlaneClient;
use crate::config::qualify_service;
use crate::identity::Identity;
use crate::metrics::edges::InboundEdges;
use crate::metrics::snapshot::Tally;
use crate::metrics::{Direction, ProxyMetrics, ServiceMetrics};
use crate::outbound::Targets;
use crate::serve::Drain;

/// Outbound series that are not services of the mesh.
const NOT_SERVICES: [&str; 2] = ["unknown", "egress"];

/// Where the numbers come from.
pub(crate) struct StatsSources {
    pub metrics: Arc<ProxyMetrics>,
    pub edges: Arc<InboundEdges>,
    pub targets: Arc<Targets>,
}

/// Builds one report per interval, remembering what the last one held.
pub(crate) struct Shipper {
    sources: StatsSources,
    proxy_id: String,
    /// `name.namespace` of the service this proxy serves, if it serves one.
    inbound_service: Option<String>,
    /// Per outbound service: the handle and the totals last shipped.
    shipped: HashMap<String, (Weak<ServiceMetrics>, Tally)>,
    /// Per outbound service: retries, budget exhausted, bulkhead rejected, last shipped.
    shipped_resilience: HashMap<String, [u64; 3]>,
}

impl Shipper {
    pub(crate) fn new(sources: StatsSources, proxy_id: String) -> Self {
        Shipper {
            sources,
            proxy_id,
            inbound_service: None,
            shipped: HashMap::new(),
            shipped_resilience: HashMap::new(),
        }
    }

    /// The interval's report, and the totals it leaves remembered.
    pub(crate) fn report(&mut self) -> StatsReport {
        let mut series = Vec::new();
        let mut live = Vec::new();
        for m in self.sources.metrics.live_services() {
            if m.direction() != Direction::Outbound || NOT_SERVICES.contains(&m.service()) {
                continue;
            }
            let tally = m.tally();
            let delta = match self.shipped.get(m.service()) {
                Some((handle, last)) if Weak::ptr_eq(handle, &Arc::downgrade(&m)) => {
                    subtract(&tally, last)
                }
                // A new handle (the service was idle, dropped, and rebuilt): all is new.
                _ => tally.clone(),
            };
            live.push(m.service().to_string());
            if delta.requests > 0 {
                series.push(series_report(Side::Client, m.service(), None, &delta));
            }
            self.shipped
                .insert(m.service().to_string(), (Arc::downgrade(&m), tally));
        }
        self.shipped.retain(|service, _| live.contains(service));
        for (caller, tally) in self.sources.edges.take() {
            if let Some(service) = &self.inbound_service {
                series.push(series_report(
                    Side::Server,
                    service,
                    caller.as_deref(),
                    &tally,
                ));
            }
        }
        StatsReport {
            proxy_id: self.proxy_id.clone(),
            series,
            resilience: self.resilience(),
        }
    }

    fn resilience(&mut self) -> Vec<ResilienceReport> {
        let now = Instant::now();
        let targets = self.sources.targets.built();
        let reports: Vec<ResilienceReport> = targets
            .iter()
            .map(|target| {
                let service = target.metrics.service().to_string();
                let counters = &target.metrics.resilience;
                let totals = [
                    counters.retries.load(std::sync::atomic::Ordering::Relaxed),
                    counters
                        .budget_exhausted
                        .load(std::sync::atomic::Ordering::Relaxed),
                    counters
                        .bulkhead_rejected
                        .load(std::sync::atomic::Ordering::Relaxed),
                ];
                let last = self.shipped_resilience.insert(service.clone(), totals);
                let delta = |i: usize| totals[i].saturating_sub(last.map_or(0, |l| l[i]));
                let load = target.bulkhead.load();
                ResilienceReport {
                    service,
                    retries: delta(0),
                    budget_exhausted: delta(1),
                    bulkhead_rejected: delta(2),
                    retry_budget_used: target
                        .budget
                        .lock()
                        .map(|mut b| b.used(now))
                        .unwrap_or_default(),
                    bulkhead_in_flight: load.in_flight,
                    bulkhead_limit: load.max_concurrent,
                    bulkhead_pending: load.pending,
                    circuits: target
                        .endpoints
                        .iter()
                        .map(|e| {
                            let report = e.circuit().report();
                            CircuitView {
                                endpoint: report.endpoint,
                                state: report.state.to_string(),
                            }
                        })
                        .collect(),
                }
            })
            .collect();
        self.shipped_resilience
            .retain(|service, _| reports.iter().any(|r| &r.service == service));
        reports
    }
}

/// `now - before`, or `now` whole if `before` is not part of it.
fn subtract(now: &Tally, before: &Tally) -> Tally {
    let mut latency = now.latency.clone();
    if latency.subtract(&before.latency).is_err() {
        return now.clone();
    }
    Tally {
        requests: now.requests.saturating_sub(before.requests),
        successes: now.successes.saturating_sub(before.successes),
        latency,
    }
}

fn series_report(side: Side, service: &str, caller: Option<&str>, tally: &Tally) -> SeriesReport {
    SeriesReport {
        side,
        service: service.to_string(),
        caller: caller.map(str::to_string),
        requests: tally.requests,
        successes: tally.successes.min(tally.requests),
        latency: tally.latency_base64(),
    }
}

/// Ships a report every `interval` until drained, then a last one.
pub(crate) async fn ship(
    cp: Arc<ControlPlaneClient>,
    identity: Arc<Identity>,
    mut shipper: Shipper,
    service: Option<String>,
    interval: Duration,
    mut drain: Drain,
) {
    tokio::select! {
        () = identity.wait_certified() => {}
        () = drain.signaled() => return,
    }
    // A bare service name is in the namespace of the identity we were issued.
    let namespace = identity.id().map(|id| id.namespace()).unwrap_or("default");
    shipper.inbound_service = service.map(|s| {
        let (namespace, name) = qualify_service(&s, namespace);
        format!("{name}.{namespace}")
    });
    let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        let last = tokio::select! {
            _ = ticks.tick() => false,
            () = drain.signaled() => true,
        };
        let report = shipper.report();
        if !report.series.is_empty() || !report.resilience.is_empty() {
            let sending = cp.json::<StatsAccepted>(Method::POST, "/v1/stats", &report, true);
            let sent = if last {
                tokio::time::timeout(Duration::from_secs(1), sending)
                    .await
                    .unwrap_or_else(|_| {
                        Err(super::client::ControlPlaneError::Protocol(
                            "timed out".into(),
                        ))
                    })
            } else {
                sending.await
            };
            match sent {
                Ok(_) if failing => {
                    failing = false;
                    tracing::info!("stats reach the control plane again");
                }
                Ok(_) => {}
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "cannot ship stats; this interval's are dropped");
                }
                Err(error) => tracing::debug!(%error, "cannot ship stats"),
            }
        }
        if last {
            return;
        }
    }
}
