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
use crate::metrics::snapshot::Tally;
use crate::metrics::{Direction, ProxyMetrics, ServiceMetrics};
use crate::outbound::Targets;
use crate::serve::Drain;

/// Outbound series that are not services of the mesh.
const NOT_SERVICES: [&str; 2] = ["unknown", "egress"];

/// Where the numbers come from.
pub(crate) struct StatsSources {
    pub metrics: Arc<ProxyMetrics>,
    /// The inbound side's metrics: its requests by caller.
    pub inbound: Arc<ServiceMetrics>,
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
    /// Per inbound caller ("" for plaintext callers): the totals last seen.
    shipped_inbound: HashMap<String, Tally>,
}

impl Shipper {
    pub(crate) fn new(sources: StatsSources, proxy_id: String) -> Self {
        Shipper {
            sources,
            proxy_id,
            inbound_service: None,
            shipped: HashMap::new(),
            shipped_resilience: HashMap::new(),
            shipped_inbound: HashMap::new(),
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
        // Inbound, by caller; what came before this proxy knew its service is skipped.
        for (caller, tally) in self.sources.inbound.caller_tallies() {
            let delta = match self.shipped_inbound.get(&caller) {
                Some(last) => subtract(&tally, last),
                None => tally.clone(),
            };
            if let Some(service) = &self.inbound_service
                && delta.requests > 0
            {
                let caller = (!caller.is_empty()).then_some(caller.as_str());
                series.push(series_report(Side::Server, service, caller, &delta));
            }
            self.shipped_inbound.insert(caller, tally);
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
                    counters.retries.get(),
                    counters.budget_exhausted.get(),
                    counters.bulkhead_rejected.get(),
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

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use hdrhistogram::Histogram;
    use hdrhistogram::serialization::Deserializer;
    use outrigger_certs::{CaPaths, TrustBundle, init_ca};

    use super::*;
    use crate::mesh::MeshState;
    use crate::outbound::TargetContext;
    use crate::transport::mesh_client_config;

    fn shipper(dir: &std::path::Path) -> (Shipper, Arc<ProxyMetrics>, Arc<ServiceMetrics>) {
        init_ca(dir, "cluster.local").expect("CA");
        let pem = std::fs::read_to_string(CaPaths::new(dir).trust_anchor()).expect("PEM");
        let metrics = ProxyMetrics::new();
        let identity = Identity::new(
            TrustBundle::from_pem(&pem).expect("bundle"),
            "cluster.local",
            metrics.clone(),
        );
        let mesh = MeshState::new(identity.clone(), metrics.clone());
        let context = TargetContext {
            tls: mesh_client_config(&identity).expect("TLS config"),
            metrics: metrics.clone(),
            connect_timeout: Duration::from_secs(1),
        };
        let inbound = metrics.service(Direction::Inbound, "billing");
        let sources = StatsSources {
            metrics: metrics.clone(),
            inbound: inbound.clone(),
            targets: Targets::new(context, mesh, Duration::from_secs(300)),
        };
        (Shipper::new(sources, "p-1".into()), metrics, inbound)
    }

    fn latency(series: &SeriesReport) -> Histogram<u64> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&series.latency)
            .unwrap();
        Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn ships_each_interval_s_delta_once() {
        let dir = tempfile::tempdir().unwrap();
        let (mut shipper, metrics, inbound) = shipper(dir.path());
        let payments = metrics.service(Direction::Outbound, "payments.shop");
        let unknown = metrics.service(Direction::Outbound, "unknown");
        payments.record_status(200, Duration::from_millis(2));
        payments.record_status(503, Duration::from_millis(40));
        unknown.record_status(200, Duration::from_millis(1));

        let first = shipper.report();
        assert_eq!(first.proxy_id, "p-1");
        assert_eq!(first.series.len(), 1, "not `unknown`: {:?}", first.series);
        let series = &first.series[0];
        assert_eq!(
            (series.side, series.service.as_str()),
            (Side::Client, "payments.shop")
        );
        assert_eq!((series.requests, series.successes), (2, 1));
        assert_eq!(latency(series).len(), 2);
        assert!(shipper.report().series.is_empty(), "nothing new");

        payments.record_status(200, Duration::from_millis(7));
        let next = shipper.report();
        assert_eq!((next.series[0].requests, next.series[0].successes), (1, 1));
        let h = latency(&next.series[0]);
        assert_eq!(h.len(), 1);
        assert!(h.equivalent(h.max(), 7_000), "{}", h.max());

        // The service went idle and was rebuilt: its new handle counts from zero.
        drop(payments);
        let rebuilt = metrics.service(Direction::Outbound, "payments.shop");
        rebuilt.record_status(200, Duration::from_millis(3));
        let after = shipper.report();
        assert_eq!(after.series[0].requests, 1);

        // Inbound calls by caller, once this proxy knows which service it is.
        let orders = inbound.edge("spiffe://cluster.local/ns/shop/sa/orders", "");
        orders.record_status(200, Duration::from_millis(1));
        assert!(
            shipper.report().series.is_empty(),
            "no service to report them for"
        );
        shipper.inbound_service = Some("billing.shop".into());
        orders.record_status(502, Duration::from_millis(1));
        let inbound = shipper.report();
        assert_eq!(inbound.series.len(), 1);
        let series = &inbound.series[0];
        assert_eq!(series.side, Side::Server);
        assert_eq!(series.service, "billing.shop");
        assert_eq!(
            series.caller.as_deref(),
            Some("spiffe://cluster.local/ns/shop/sa/orders")
        );
        assert_eq!((series.requests, series.successes), (1, 0));
        assert!(inbound.resilience.is_empty(), "no service called yet");
    }
}
