//! What the proxy may call, from the control plane's snapshots: services by the names an
//! app may use for them, each with its identity, endpoints, TrafficPolicy and balancer;
//! and how its own service accepts calls (the ServerPolicy, compiled for the inbound
//! side). A snapshot replaces both atomically; targets and endpoints that did not change
//! are carried over (with their connections and latency history), so applying a snapshot
//! drops no connection and no request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use outrigger_api::{ServiceView, Snapshot, TrafficPolicySpec};
use outrigger_certs::{ServerIdVerifier, SpiffeId, client_config};
use tokio::sync::watch;

use crate::authz::{ServerPolicy, ServerPolicyCell};
use crate::balance::Balancer;
use crate::identity::Identity;
use crate::metrics::{Direction, Registry, ServiceMetrics};
use crate::outbound::endpoint::Endpoint;
use crate::outbound::pool::{Http2Endpoint, Transport};
use crate::resilience::budget::RetryBudget;
use crate::resilience::bulkhead::Bulkhead;
use crate::resilience::circuit::{Circuit, EjectionCap};
use crate::resilience::policy::ServicePolicy;

/// A service this proxy may call.
pub struct Target {
    pub name: String,
    pub namespace: String,
    pub identity: SpiffeId,
    pub endpoints: Vec<Arc<Endpoint>>,
    /// How to call it, as the control plane sent it (`None`: DESIGN.md's defaults).
    pub policy: Option<TrafficPolicySpec>,
    /// The same, resolved for the data path.
    pub resolved: ServicePolicy,
    pub budget: Mutex<RetryBudget>,
    pub bulkhead: Bulkhead,
    /// Shared by the endpoints' breakers; kept across snapshots.
    pub ejections: Arc<EjectionCap>,
    balancer: Balancer,
    pub metrics: Arc<ServiceMetrics>,
}

/// What the balancer found for a request.
pub enum Pick<'a> {
    Endpoint(&'a Arc<Endpoint>),
    NoEndpoints,
    /// Every endpoint's breaker is open (or half-open with its probe already out).
    AllOpen,
}

impl Target {
    /// The endpoint for a try starting at `now`, as the policy's balancer chooses, among
    /// those whose breaker lets requests through; `avoid` (the endpoint of the previous
    /// try) is taken only when nothing else is usable.
    pub fn pick(&self, now: Instant, avoid: Option<SocketAddr>) -> Pick<'_> {
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

#[derive(Default)]
pub struct Table {
    pub version: u64,
    by_authority: HashMap<String, Arc<Target>>,
    pub targets: Vec<Arc<Target>>,
}

impl Table {
    /// The target for a request's host (port and letter case ignored).
    pub fn lookup(&self, host: &str) -> Option<&Arc<Target>> {
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.by_authority.get(&host.to_ascii_lowercase());
        }
        self.by_authority.get(host)
    }
}

pub struct Discovery {
    table: ArcSwap<Table>,
    server: Arc<ServerPolicyCell>,
    applied: watch::Sender<u64>,
    identity: Arc<Identity>,
    metrics: Arc<Registry>,
    connect_timeout: Duration,
}

impl Discovery {
    pub fn new(
        identity: Arc<Identity>,
        metrics: Arc<Registry>,
        connect_timeout: Duration,
    ) -> Arc<Self> {
        Arc::new(Discovery {
            table: ArcSwap::from_pointee(Table::default()),
            server: Arc::new(ServerPolicyCell::default()),
            applied: watch::channel(0).0,
            identity,
            metrics,
            connect_timeout,
        })
    }

    pub fn table(&self) -> arc_swap::Guard<Arc<Table>> {
        self.table.load()
    }

    /// The ServerPolicy in force, for the inbound side; replaced by each snapshot.
    pub fn server_policy(&self) -> Arc<ServerPolicyCell> {
        self.server.clone()
    }

    /// Whether a snapshot has been applied.
    pub fn has_config(&self) -> bool {
        *self.applied.borrow() > 0
    }

    /// Applies a snapshot: the trust bundle first, then the services.
    pub fn apply(&self, snapshot: &Snapshot) {
        if let Err(error) = self.identity.bundle.update(&snapshot.trust_bundle) {
            tracing::warn!(%error, "keeping the current trust bundle");
        }
        let old = self.table.load_full();
        let own_namespace = self.identity.id().map(|id| id.namespace().to_string());
        let mut table = Table {
            version: snapshot.version,
            ..Table::default()
        };
        for view in &snapshot.services {
            match self.target(view, &old) {
                Ok(target) => table.targets.push(target),
                Err(error) => tracing::warn!(service = %view.name, %error, "skipping service"),
            }
        }
        for target in &table.targets {
            for name in authorities(target) {
                table.by_authority.insert(name, target.clone());
            }
        }
        // A bare name means the service in our own namespace; else the only one so named.
        let mut bare: HashMap<&str, Vec<&Arc<Target>>> = HashMap::new();
        for target in &table.targets {
            bare.entry(&target.name).or_default().push(target);
        }
        let mut bare_names = Vec::new();
        for (name, candidates) in bare {
            let chosen = candidates
                .iter()
                .find(|t| Some(&t.namespace) == own_namespace.as_ref())
                .or_else(|| (candidates.len() == 1).then(|| &candidates[0]));
            if let Some(target) = chosen {
                bare_names.push((name.to_string(), (*target).clone()));
            }
        }
        table.by_authority.extend(bare_names);
        self.metrics.config_version.store(snapshot.version, Relaxed);
        if self.server.load().spec() != snapshot.server_policy.as_ref() {
            self.server
                .store(ServerPolicy::compile(snapshot.server_policy.as_ref()));
        }
        self.table.store(Arc::new(table));
        self.applied.send_replace(snapshot.version);
        tracing::info!(
            version = snapshot.version,
            services = snapshot.services.len(),
            "config applied"
        );
    }

    fn target(&self, view: &ServiceView, old: &Table) -> Result<Arc<Target>, String> {
        let identity: SpiffeId = view.identity.parse().map_err(|e| format!("{e}"))?;
        let addrs = view
            .endpoints
            .iter()
            .map(|e| {
                e.address
                    .parse::<SocketAddr>()
                    .map_err(|_| format!("bad endpoint {:?}", e.address))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let previous = old.targets.iter().find(|t| {
            t.name == view.name && t.namespace == view.namespace && t.identity == identity
        });
        if let Some(previous) = previous {
            let same = previous.policy == view.traffic_policy
                && previous.endpoints.len() == addrs.len()
                && previous
                    .endpoints
                    .iter()
                    .zip(&addrs)
                    .all(|(e, a)| e.addr() == *a);
            if same {
                return Ok(previous.clone());
            }
        }
        let resolved = ServicePolicy::resolve(view.traffic_policy.as_ref(), self.connect_timeout);
        let label = format!("{}.{}", view.name, view.namespace);
        let metrics = self.metrics.service(Direction::Outbound, &label);
        // The ejection count belongs to the service, not to one snapshot of it.
        let ejections = match previous {
            Some(previous) => previous.ejections.clone(),
            None => EjectionCap::new(0, 50),
        };
        ejections.update(addrs.len(), resolved.max_ejected_percent);
        let circuit = |addr| {
            Circuit::spawn(
                addr,
                resolved.breaker.clone(),
                ejections.clone(),
                metrics.resilience.circuits.clone(),
            )
        };
        // Made only when an endpoint is new: a TLS config is not free.
        let mut tls_config = None;
        let now = Instant::now();
        let mut endpoints = Vec::with_capacity(addrs.len());
        for addr in addrs {
            // An endpoint that stays keeps its live connection, latency history and
            // breaker (unless the breaker's settings changed).
            let kept = previous.and_then(|p| p.endpoints.iter().find(|e| e.addr() == addr));
            if let Some(kept) = kept {
                if *kept.breaker_config() != resolved.breaker {
                    kept.replace_circuit(circuit(addr), resolved.breaker.clone());
                }
                endpoints.push(kept.clone());
                continue;
            }
            let tls = match tls_config.clone() {
                Some(tls) => tls,
                None => {
                    let made = client_config(
                        Some(self.identity.certs.clone()),
                        ServerIdVerifier::new(self.identity.bundle.clone(), identity.clone()),
                        &[b"h2"],
                    )
                    .map_err(|e| e.to_string())?;
                    tls_config = Some(made.clone());
                    made
                }
            };
            let connection = Http2Endpoint::new(
                addr,
                Transport::Tls(tls),
                resolved.connect_timeout,
                self.metrics.clone(),
            )
            .with_idle_timeout(resolved.idle_timeout);
            endpoints.push(Arc::new(Endpoint::new(
                connection,
                circuit(addr),
                resolved.breaker.clone(),
                now,
            )));
        }
        let policy = view.traffic_policy.clone();
        let balancer = Balancer::new(
            policy
                .as_ref()
                .and_then(|p| p.load_balancer)
                .unwrap_or_default(),
        );
        let budget = &resolved.budget;
        let bulkhead = &resolved.bulkhead;
        Ok(Arc::new(Target {
            name: view.name.clone(),
            namespace: view.namespace.clone(),
            identity,
            endpoints,
            policy,
            budget: Mutex::new(RetryBudget::new(
                budget.ratio,
                budget.min_per_second,
                budget.window,
                tokio::time::Instant::now(),
            )),
            bulkhead: Bulkhead::new(
                bulkhead.max_concurrent,
                bulkhead.max_pending,
                bulkhead.queue_timeout,
            ),
            resolved,
            ejections,
            balancer,
            metrics,
        }))
    }
}

/// The fully qualified names a target answers to, Kubernetes style.
fn authorities(target: &Target) -> [String; 3] {
    let (name, ns) = (&target.name, &target.namespace);
    [
        format!("{name}.{ns}"),
        format!("{name}.{ns}.svc"),
        format!("{name}.{ns}.svc.cluster.local"),
    ]
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use outrigger_api::{
        Authorization, AuthorizationDefault, EndpointView, LoadBalancer, Protocol, ServerPolicySpec,
    };
    use outrigger_certs::{CaPaths, TrustBundle, init_ca};

    use super::*;
    use crate::balance::Balanced;

    fn discovery() -> (Arc<Discovery>, String, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        init_ca(dir.path(), "cluster.local").expect("CA");
        let pem = std::fs::read_to_string(CaPaths::new(dir.path()).trust_anchor()).expect("PEM");
        let bundle = TrustBundle::from_pem(&pem).expect("bundle");
        let metrics = Registry::new();
        let identity = Identity::new(bundle, "cluster.local", metrics.clone());
        let discovery = Discovery::new(identity, metrics, Duration::from_secs(1));
        (discovery, pem, dir)
    }

    fn snapshot(
        version: u64,
        pem: &str,
        addrs: &[&str],
        balancer: Option<LoadBalancer>,
    ) -> Snapshot {
        Snapshot {
            version,
            trust_bundle: pem.to_string(),
            services: vec![ServiceView {
                name: "payments".into(),
                namespace: "shop".into(),
                identity: "spiffe://cluster.local/ns/shop/sa/payments".into(),
                protocol: Protocol::Http,
                endpoints: addrs
                    .iter()
                    .map(|a| EndpointView {
                        address: a.to_string(),
                    })
                    .collect(),
                traffic_policy: balancer.map(|lb| TrafficPolicySpec {
                    load_balancer: Some(lb),
                    ..TrafficPolicySpec::default()
                }),
            }],
            server_policy: None,
        }
    }

    #[tokio::test]
    async fn endpoints_that_stay_keep_their_connection_and_latency_history() {
        let (discovery, pem, _dir) = discovery();
        discovery.apply(&snapshot(
            1,
            &pem,
            &["127.0.0.1:1001", "127.0.0.1:1002"],
            None,
        ));
        let first = discovery.table().lookup("payments.shop").cloned().unwrap();
        let kept = first.endpoints[0].clone();
        let t0 = Instant::now();
        kept.load()
            .start(t0)
            .finish(true, t0 + Duration::from_millis(7));

        // Another endpoint set and another balancer: a new target, the same endpoint.
        let next = snapshot(
            2,
            &pem,
            &["127.0.0.1:1001", "127.0.0.1:1003"],
            Some(LoadBalancer::RoundRobin),
        );
        discovery.apply(&next);
        let second = discovery.table().lookup("payments").cloned().unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        assert!(Arc::ptr_eq(&second.endpoints[0], &kept));
        let estimate = second.endpoints[0]
            .load()
            .estimate(t0 + Duration::from_millis(7));
        assert!((estimate - 7e6).abs() < 1.0, "{estimate}");
        assert_eq!(second.endpoints[1].addr().port(), 1003);
        // Round robin now: the two endpoints take turns.
        let now = Instant::now();
        let addr = |pick: Pick<'_>| match pick {
            Pick::Endpoint(e) => e.addr(),
            _ => panic!("an endpoint"),
        };
        let a = addr(second.pick(now, None));
        let b = addr(second.pick(now, None));
        assert_ne!(a, b);

        // The same snapshot again changes nothing.
        discovery.apply(&Snapshot { version: 3, ..next });
        let third = discovery.table().lookup("payments").cloned().unwrap();
        assert!(Arc::ptr_eq(&second, &third));
    }

    #[tokio::test]
    async fn the_server_policy_follows_snapshots() {
        let (discovery, pem, _dir) = discovery();
        let cell = discovery.server_policy();
        let caller = Some("spiffe://cluster.local/ns/shop/sa/orders");
        assert!(cell.load().allows(caller, &http::Method::GET, "/"));
        let deny_all = ServerPolicySpec {
            authorization: Some(Authorization {
                default: AuthorizationDefault::Deny,
                rules: vec![],
            }),
            ..ServerPolicySpec::default()
        };
        discovery.apply(&Snapshot {
            server_policy: Some(deny_all.clone()),
            ..snapshot(1, &pem, &[], None)
        });
        assert!(!cell.load().allows(caller, &http::Method::GET, "/"));
        assert_eq!(cell.load().spec(), Some(&deny_all));
        discovery.apply(&snapshot(2, &pem, &[], None));
        assert!(cell.load().allows(caller, &http::Method::GET, "/"));
    }
}
