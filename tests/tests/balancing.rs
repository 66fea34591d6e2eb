//! Load balancing across a service's instances, as the caller's sidecar does it: an even
//! spread with round-robin and with the default (power of two choices over peak-EWMA),
//! and a slowed-down instance getting clearly less than its share with the default.
//! Assertions are on request counts, with wide margins, never on times.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use outrigger_tests::{EchoApp, Http1, Mesh, Sidecar, free_port, loopback};

/// Requests per test, and how many are in flight at once: enough that the balancer has a
/// real choice (costs include requests in flight), few enough for a shared machine.
const REQUESTS: usize = 300;
const CONCURRENCY: usize = 10;

/// Three payments instances (each an echo app behind its sidecar) and an orders sidecar
/// to call them through, with an optional TrafficPolicy `spec` for payments.
struct Cluster {
    _mesh: Mesh,
    _instances: Vec<Sidecar>,
    orders: Sidecar,
    apps: Vec<Arc<EchoApp>>,
}

async fn cluster(traffic_policy: Option<&str>) -> Cluster {
    let mut apps = Vec::new();
    for i in 0..3 {
        apps.push(EchoApp::start(&format!("payments-{i}")).await);
    }
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let addrs: Vec<SocketAddr> = ports.iter().map(|p| loopback(*p)).collect();
    let mut mesh = Mesh::new();
    mesh.add_service("shop", "payments", "shop/payments", &addrs);
    if let Some(spec) = traffic_policy {
        mesh.write_policy(
            "traffic-policy.yaml",
            &format!(
                "apiVersion: outrigger.dev/v1alpha1\nkind: TrafficPolicy\nmetadata: {{name: payments, namespace: shop}}\nspec:\n  targetRef: {{kind: MeshService, name: payments}}\n{spec}"
            ),
        );
    }
    mesh.start_control_plane().await;
    // One at a time: the harness rewrites an identity's token file for each sidecar.
    let mut instances = Vec::new();
    for (app, port) in apps.iter().zip(&ports) {
        instances.push(
            mesh.sidecar("payments", "shop/payments", Some(app.addr), *port)
                .await,
        );
    }
    let orders = mesh
        .sidecar("orders", "shop/orders", None, free_port())
        .await;
    Cluster {
        _mesh: mesh,
        _instances: instances,
        orders,
        apps,
    }
}

impl Cluster {
    /// Sends [`REQUESTS`] requests, [`CONCURRENCY`] at a time; every one must succeed.
    /// Returns how many each instance received.
    async fn spread(&self) -> Vec<usize> {
        let before: Vec<usize> = self.apps.iter().map(|a| a.requests()).collect();
        let outbound = self.orders.outbound;
        let workers: Vec<_> = (0..CONCURRENCY)
            .map(|_| {
                tokio::spawn(async move {
                    let mut client = Http1::connect(outbound).await.expect("connect");
                    for _ in 0..REQUESTS / CONCURRENCY {
                        let reply = client.get("payments.shop", "/", &[]).await;
                        let reply = reply.expect("an answer");
                        assert_eq!(reply.status, 200, "{}", reply.body);
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.await.expect("worker");
        }
        let counts: Vec<usize> = self
            .apps
            .iter()
            .zip(before)
            .map(|(app, before)| app.requests() - before)
            .collect();
        assert_eq!(counts.iter().sum::<usize>(), REQUESTS, "{counts:?}");
        counts
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_gives_each_instance_its_third() {
    let cluster = cluster(Some("  loadBalancer: round-robin\n")).await;
    let counts = cluster.spread().await;
    for count in &counts {
        assert!((90..=110).contains(count), "{counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_ewma_spreads_equal_instances_fairly() {
    let cluster = cluster(None).await;
    // The same work on each instance, long enough that a scheduling hiccup of the shared
    // machine does not make one look much slower than the others.
    for app in &cluster.apps {
        app.set_delay(Duration::from_millis(10));
    }
    let counts = cluster.spread().await;
    for count in &counts {
        assert!(*count >= REQUESTS / 6, "each gets a fair share: {counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_ewma_sends_a_slow_instance_clearly_less() {
    let cluster = cluster(None).await;
    cluster.apps[2].set_delay(Duration::from_millis(50));
    let counts = cluster.spread().await;
    assert!(
        counts[2] * 6 < REQUESTS,
        "the slow instance gets clearly less than its third: {counts:?}"
    );
    assert!(
        counts[0] > counts[2] * 2 && counts[1] > counts[2] * 2,
        "{counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_ignores_speed() {
    // The contrast that shows the test above measures the balancer, not the setup.
    let cluster = cluster(Some("  loadBalancer: round-robin\n")).await;
    cluster.apps[2].set_delay(Duration::from_millis(50));
    let counts = cluster.spread().await;
    assert!((90..=110).contains(&counts[2]), "{counts:?}");
}
