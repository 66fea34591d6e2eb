//! The runtime state of one service this proxy calls: its endpoints (each with a pooled
//! connection, a load estimate and a circuit breaker), its balancer, retry budget,
//! bulkhead and metrics. Built from the mesh table's entry when the service is first
//! called, rebuilt when the entry changes (carrying over what did not change), and
//! dropped when idle (`targets.rs`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::ClientConfig;
use tokio::time::Instant;

use crate::balance::Balancer;
use crate::mesh::ServiceEntry;
use crate::metrics::{Direction, ProxyMetrics, ServiceMetrics};
use crate::outbound::endpoint::Endpoint;
use crate::resilience::budget::RetryBudget;
use crate::resilience::circuit::{Circuit, EjectionCap};
use crate::resilience::concurrency_limit::ConcurrencyLimit;
use crate::resilience::policy::ServicePolicy;
use crate::transport::{Http2Connection, Transport};

/// What every target is built with: shared by all of them, never copied per service.
pub(crate) struct TargetContext {
    /// One mTLS client config for every destination; the destination's identity is
    /// checked on each new connection.
    pub tls: Arc<ClientConfig>,
    pub metrics: Arc<ProxyMetrics>,
    pub connect_timeout: Duration,
}

/// A service this proxy calls, ready for requests.
pub(crate) struct Target {
    /// What it was built from; a different entry for the same service means a rebuild.
    pub entry: Arc<ServiceEntry>,
    pub endpoints: Vec<Arc<Endpoint>>,
    /// How to call it: its TrafficPolicy resolved for the data path.
    pub resolved: ServicePolicy,
    pub budget: Mutex<RetryBudget>,
    pub bulkhead: ConcurrencyLimit,
    /// Shared by the endpoints' breakers; kept across rebuilds.
    pub ejections: Arc<EjectionCap>,
    balancer: Balancer,
    pub metrics: Arc<ServiceMetrics>,
    /// When a request last used it, in milliseconds since the targets' epoch.
    last_used: AtomicU64,
}

/// What the balancer found for a request.
pub(crate) enum Pick<'a> {
    Endpoint(&'a Arc<Endpoint>),
    NoEndpoints,
    /// Every endpoint's breaker is open (or half-open with its probe already out).
    AllOpen,
}

impl Target {
    /// The runtime state for `entry`. Endpoints that `previous` (the state of an older
    /// entry of the same service) already had keep their connection, latency history and
    /// breaker, so a config change drops no connection.
    pub(crate) fn build(
        entry: Arc<ServiceEntry>,
        previous: Option<&Target>,
        context: &TargetContext,
        now: Instant,
    ) -> Target {
        // Endpoints of another identity are other servers, as far as TLS is concerned.
        let previous = previous.filter(|p| p.entry.identity == entry.identity);
        let policy = entry.traffic_policy();
        let resolved = ServicePolicy::resolve(
            policy.as_ref(),
            entry.protocol,
            entry.namespace(),
            context.connect_timeout,
        );
        // Counters and the ejection count belong to the service, not to one version of it.
        let metrics = match previous {
            Some(previous) => previous.metrics.clone(),
            None => context.metrics.service(Direction::Outbound, entry.key()),
        };
        let ejections = match previous {
            Some(previous) => previous.ejections.clone(),
            None => EjectionCap::new(0, 50),
        };
        ejections.update(entry.endpoints.len(), resolved.max_ejected_percent);
        let circuit = |addr| {
            Circuit::spawn(
                addr,
                resolved.breaker.clone(),
                ejections.clone(),
                metrics.resilience.circuits.clone(),
            )
        };
        let mut endpoints = Vec::with_capacity(entry.endpoints.len());
        for &addr in &entry.endpoints {
            let kept = previous.and_then(|p| p.endpoints.iter().find(|e| e.addr() == addr));
            if let Some(kept) = kept {
                if *kept.breaker_config() != resolved.breaker {
                    kept.replace_circuit(circuit(addr), resolved.breaker.clone());
                }
                endpoints.push(kept.clone());
                continue;
            }
            let transport = Transport::Mesh {
                config: context.tls.clone(),
                expected: entry.identity.clone(),
            };
            let connection = Http2Connection::new(
                addr,
                transport,
                resolved.connect_timeout,
                context.metrics.clone(),
            )
            .with_idle_timeout(resolved.idle_timeout);
            endpoints.push(Arc::new(Endpoint::new(
                connection,
                circuit(addr),
                resolved.breaker.clone(),
                now,
            )));
        }
        let balancer = Balancer::new(
            policy
                .as_ref()
                .and_then(|p| p.load_balancer)
                .unwrap_or_default(),
        );
        let budget = &resolved.budget;
        let bulkhead = &resolved.bulkhead;
        Target {
            budget: Mutex::new(RetryBudget::new(
                budget.ratio,
                budget.min_per_second,
                budget.window,
                now,
            )),
            bulkhead: ConcurrencyLimit::new(
                bulkhead.max_concurrent,
                bulkhead.max_pending,
                bulkhead.queue_timeout,
            ),
            entry,
            endpoints,
            resolved,
            ejections,
            balancer,
            metrics,
            last_used: AtomicU64::new(0),
        }
    }

    /// `name.namespace`, as metrics and logs name it.
    pub(crate) fn name(&self) -> &str {
        self.entry.key()
    }

    pub(super) fn touch(&self, millis: u64) {
        self.last_used.store(millis, Relaxed);
    }

    pub(super) fn last_used(&self) -> u64 {
        self.last_used.load(Relaxed)
    }

    /// The endpoint for a try starting at `now`, as the policy's balancer chooses, among
    /// those whose breaker lets requests through; `avoid` (the endpoint of the previous
    /// try) is taken only when nothing else is usable.
    pub(crate) fn pick(&self, now: Instant, avoid: Option<SocketAddr>) -> Pick<'_> {
        if self.endpoints.is_empty() {
            return Pick::NoEndpoints;
        }
        let mut rng = fastrand::Rng::new();
        // A retry balances over the other endpoints: with two, P2C would always compare
        // the same pair, and a fast-failing endpoint looks cheap. Retries only: this
        // allocates.
        if let Some(avoid) = avoid.filter(|_| self.endpoints.len() > 1) {
            let others: Vec<Arc<Endpoint>> = self
                .endpoints
                .iter()
                .filter(|e| e.addr() != avoid)
                .cloned()
                .collect();
            for _ in 0..4 {
                let Some(picked) = self.balancer.pick(&others, &mut rng, now) else {
                    break;
                };
                if picked.circuit().try_pass() {
                    let index = self.endpoints.iter().position(|e| Arc::ptr_eq(e, picked));
                    if let Some(endpoint) = index.and_then(|i| self.endpoints.get(i)) {
                        return Pick::Endpoint(endpoint);
                    }
                }
            }
            // Nothing else usable: the previous endpoint is better than none.
        }
        // A few draws: P2C is random, and a half-open probe may be claimed meanwhile.
        for _ in 0..4 {
            let Some(endpoint) = self.balancer.pick(&self.endpoints, &mut rng, now) else {
                break;
            };
            if endpoint.circuit().try_pass() {
                return Pick::Endpoint(endpoint);
            }
        }
        Pick::AllOpen
    }
}
