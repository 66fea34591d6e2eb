//! The services this proxy actually calls, with their runtime state: built on a
//! service's first request, rebuilt when its entry in the mesh table changes, and
//! dropped once it has been idle for a while or has left the mesh. A sidecar's memory
//! thus follows what its app calls, not the size of the mesh.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::target::{Target, TargetContext};
use crate::mesh::{MeshState, ServiceEntry};

pub(crate) struct Targets {
    /// By `name.namespace`. A std mutex: held for a lookup or a build, never across an
    /// await, and uncontended on the default single worker.
    built: Mutex<HashMap<Box<str>, Arc<Target>>>,
    context: TargetContext,
    mesh: Arc<MeshState>,
    idle: Duration,
    /// `last_used` stamps count milliseconds from here.
    epoch: Instant,
}

impl Targets {
    pub(crate) fn new(context: TargetContext, mesh: Arc<MeshState>, idle: Duration) -> Arc<Self> {
        Arc::new(Targets {
            built: Mutex::new(HashMap::new()),
            context,
            mesh,
            idle,
            epoch: Instant::now(),
        })
    }

    /// The runtime state of `entry`'s service, built now if this is its first request
    /// or if its entry changed since it was built.
    pub(crate) fn get(&self, entry: &Arc<ServiceEntry>, now: Instant) -> Arc<Target> {
        let stamp = self.stamp(now);
        let mut built = self.built.lock().unwrap_or_else(PoisonError::into_inner);
        let previous = match built.get(entry.key()) {
            Some(target) if Arc::ptr_eq(&target.entry, entry) => {
                target.touch(stamp);
                return target.clone();
            }
            previous => previous.cloned(),
        };
        let target = Arc::new(Target::build(
            entry.clone(),
            previous.as_deref(),
            &self.context,
            now,
        ));
        target.touch(stamp);
        tracing::debug!(
            service = entry.key(),
            rebuilt = previous.is_some(),
            "built runtime state"
        );
        built.insert(entry.key().into(), target.clone());
        target
    }

    /// The runtime state of `name.namespace` if it is built, without building it or
    /// counting a use.
    pub(crate) fn peek(&self, key: &str) -> Option<Arc<Target>> {
        let built = self.built.lock().unwrap_or_else(PoisonError::into_inner);
        built.get(key).cloned()
    }

    /// Drops the state of services idle for longer than the idle timeout, or gone from
    /// the mesh, unless a request still holds them. Returns how many were dropped.
    pub(crate) fn evict_idle(&self, now: Instant) -> usize {
        let cutoff = self.stamp(now).saturating_sub(self.idle.as_millis() as u64);
        let table = self.mesh.table();
        let mut built = self.built.lock().unwrap_or_else(PoisonError::into_inner);
        let before = built.len();
        built.retain(|key, target| {
            let idle = target.last_used() < cutoff || table.get(key).is_none();
            // A request in flight holds a clone; its state stays until it is done.
            !idle || Arc::strong_count(target) > 1
        });
        let dropped = before - built.len();
        if dropped > 0 {
            tracing::debug!(dropped, kept = built.len(), "dropped idle runtime state");
        }
        dropped
    }

    /// Evicts idle state for as long as the proxy runs.
    pub(crate) async fn evict_idle_forever(self: Arc<Self>) {
        // Often enough that state lives at most about 1.25× the idle timeout.
        let period = (self.idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(60));
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.evict_idle(Instant::now());
        }
    }

    /// The services with runtime state now, for the admin pages.
    pub(crate) fn built(&self) -> Vec<Arc<Target>> {
        let built = self.built.lock().unwrap_or_else(PoisonError::into_inner);
        let mut targets: Vec<_> = built.values().cloned().collect();
        targets.sort_by(|a, b| a.name().cmp(b.name()));
        targets
    }

    fn stamp(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use outrigger_api::{
        EndpointView, LoadBalancer, Protocol, ServiceView, Snapshot, SnapshotDelta,
        TrafficPolicySpec, WatchEvent,
    };
    use outrigger_certs::{CaPaths, TrustBundle, init_ca};

    use super::*;
    use crate::balance::Balanced;
    use crate::identity::Identity;
    use crate::metrics::ProxyMetrics;
    use crate::outbound::Pick;
    use crate::transport::mesh_client_config;

    const IDLE: Duration = Duration::from_secs(300);

    struct Fixture {
        mesh: Arc<MeshState>,
        targets: Arc<Targets>,
        metrics: Arc<ProxyMetrics>,
        pem: String,
        _dir: tempfile::TempDir,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        init_ca(dir.path(), "cluster.local").expect("CA");
        let pem = std::fs::read_to_string(CaPaths::new(dir.path()).trust_anchor()).expect("PEM");
        let bundle = TrustBundle::from_pem(&pem).expect("bundle");
        let metrics = ProxyMetrics::new();
        let identity = Identity::new(bundle, "cluster.local", metrics.clone());
        let mesh = MeshState::new(identity.clone(), metrics.clone());
        let context = TargetContext {
            tls: mesh_client_config(&identity).expect("TLS config"),
            metrics: metrics.clone(),
            connect_timeout: Duration::from_secs(1),
        };
        Fixture {
            targets: Targets::new(context, mesh.clone(), IDLE),
            mesh,
            metrics,
            pem,
            _dir: dir,
        }
    }

    fn view(name: &str, ports: &[u16], balancer: Option<LoadBalancer>) -> ServiceView {
        ServiceView {
            addresses: vec![],
            name: name.into(),
            namespace: "shop".into(),
            identity: format!("spiffe://cluster.local/ns/shop/sa/{name}"),
            protocol: Protocol::Http,
            endpoints: ports
                .iter()
                .map(|p| EndpointView {
                    address: format!("127.0.0.1:{p}"),
                })
                .collect(),
            traffic_policy: balancer.map(|lb| TrafficPolicySpec {
                load_balancer: Some(lb),
                ..TrafficPolicySpec::default()
            }),
        }
    }

    impl Fixture {
        fn full(&self, version: u64, services: Vec<ServiceView>) {
            let event = WatchEvent::Full(Snapshot {
                version,
                trust_bundle: self.pem.clone(),
                services,
                server_policy: None,
            });
            self.mesh.apply_event(&event).expect("full state applies");
        }

        fn upsert(&self, version: u64, service: ServiceView) {
            let event = WatchEvent::Delta(SnapshotDelta {
                version,
                base: self.mesh.version(),
                upserted: vec![service],
                ..SnapshotDelta::default()
            });
            self.mesh.apply_event(&event).expect("delta applies");
        }

        fn target(&self, host: &str) -> Arc<Target> {
            let entry = self.mesh.table().lookup(host).expect("in the mesh").clone();
            self.targets.get(&entry, Instant::now())
        }

        fn outbound_series(&self) -> usize {
            let text = self.metrics.encode(&[]);
            text.lines()
                .filter(|l| l.starts_with("outrigger_inflight_requests{direction=\"outbound\""))
                .count()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn state_is_built_on_first_use_only() {
        let f = fixture();
        let services = (0..100).map(|i| view(&format!("s{i}"), &[1000 + i], None));
        f.full(1, services.collect());
        assert!(
            f.targets.built().is_empty(),
            "nothing is built before a request"
        );
        assert_eq!(f.outbound_series(), 0);
        let first = f.target("s7");
        assert!(Arc::ptr_eq(&first, &f.target("s7.shop")), "built once");
        assert_eq!(f.targets.built().len(), 1);
        assert_eq!(f.outbound_series(), 1, "metrics only for what is called");
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_entry_rebuilds_keeping_endpoints_that_stay() {
        let f = fixture();
        f.full(1, vec![view("payments", &[1001, 1002], None)]);
        let first = f.target("payments");
        let kept = first.endpoints[0].clone();
        let t0 = Instant::now();
        kept.load()
            .start(t0)
            .finish(true, t0 + Duration::from_millis(7));

        // Another endpoint set and another balancer: a new target, the same endpoint.
        f.upsert(
            2,
            view("payments", &[1001, 1003], Some(LoadBalancer::RoundRobin)),
        );
        let second = f.target("payments");
        assert!(!Arc::ptr_eq(&first, &second));
        assert!(Arc::ptr_eq(&second.endpoints[0], &kept));
        assert!(
            Arc::ptr_eq(&second.metrics, &first.metrics),
            "counters carry on"
        );
        let estimate = second.endpoints[0]
            .load()
            .estimate(t0 + Duration::from_millis(7));
        assert!((estimate - 7e6).abs() < 1.0, "{estimate}");
        assert_eq!(second.endpoints[1].addr().port(), 1003);
        // Round robin now: the two endpoints take turns.
        let addr = |pick: Pick<'_>| match pick {
            Pick::Endpoint(e) => e.addr(),
            _ => panic!("an endpoint"),
        };
        let a = addr(second.pick(t0, None));
        let b = addr(second.pick(t0, None));
        assert_ne!(a, b);
        // An unchanged entry is not rebuilt.
        assert!(Arc::ptr_eq(&second, &f.target("payments")));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_state_is_dropped_unless_a_request_holds_it() {
        let f = fixture();
        f.full(1, vec![view("a", &[1001], None), view("b", &[1002], None)]);
        let a = f.target("a");
        drop(f.target("b"));
        tokio::time::advance(IDLE / 2).await;
        // `a` is used again half-way: it stays; `b` does not.
        drop(f.target("a"));
        tokio::time::advance(IDLE / 2 + Duration::from_secs(1)).await;
        assert_eq!(f.targets.evict_idle(Instant::now()), 1);
        let names: Vec<String> = f.targets.built().iter().map(|t| t.name().into()).collect();
        assert_eq!(names, ["a.shop"]);
        assert_eq!(f.outbound_series(), 1, "b's series went with it");

        // Idle, but a request in flight still holds it.
        tokio::time::advance(IDLE + Duration::from_secs(1)).await;
        assert_eq!(f.targets.evict_idle(Instant::now()), 0);
        drop(a);
        assert_eq!(f.targets.evict_idle(Instant::now()), 1);
        assert!(f.targets.built().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_gone_from_the_mesh_is_dropped_at_once() {
        let f = fixture();
        f.full(1, vec![view("a", &[1001], None)]);
        drop(f.target("a"));
        f.full(2, vec![]);
        assert_eq!(f.targets.evict_idle(Instant::now()), 1);
    }
}
