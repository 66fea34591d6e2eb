//! Instances register through their sidecars, leave the endpoint set while their app is
//! unhealthy or once their sidecar is gone, and come back when healthy.

use std::sync::Arc;

use outrigger_tests::{EchoApp, Mesh, START_LIMIT, Sidecar, Traffic, eventually, free_port};

const PAYMENTS: &str = "apiVersion: outrigger.dev/v1alpha1
kind: MeshService
metadata: {name: payments, namespace: shop}
spec:
  identity: spiffe://cluster.local/ns/shop/sa/payments
";

/// payments with no static endpoints: two instances that register themselves, with
/// registrations that lapse after `ttl` without a heartbeat.
async fn setup(ttl: &str) -> (Mesh, Sidecar, [(Arc<EchoApp>, Sidecar); 2]) {
    let mut mesh = Mesh::new().control_plane_args(&["--registration-ttl", ttl]);
    mesh.write_policy("payments.yaml", PAYMENTS);
    mesh.start_control_plane().await;
    let orders = mesh
        .sidecar("orders", "shop/orders", None, free_port())
        .await;
    let mut instances = Vec::new();
    for name in ["a", "b"] {
        let app = EchoApp::start(name).await;
        let sidecar = mesh.spawn_sidecar(
            "payments",
            "shop/payments",
            Some(app.addr),
            free_port(),
            &[
                ("OUTRIGGER_APP_HEALTH", "/health"),
                ("OUTRIGGER_APP_HEALTH_INTERVAL", "100ms"),
                ("OUTRIGGER_APP_HEALTH_FAILURES", "1"),
                ("OUTRIGGER_HEARTBEAT_INTERVAL", "300ms"),
            ],
        );
        sidecar.wait_ready().await;
        instances.push((app, sidecar));
    }
    let [a, b]: [(Arc<EchoApp>, Sidecar); 2] = instances.try_into().ok().expect("two instances");
    (mesh, orders, [a, b])
}

async fn endpoints_become(orders: &Sidecar, expected: &[&Sidecar]) {
    let mut want: Vec<String> = expected.iter().map(|s| s.inbound.to_string()).collect();
    want.sort();
    eventually(&format!("endpoints become {want:?}"), START_LIMIT, || {
        let want = want.clone();
        async move {
            let mut have = orders.endpoints_of("payments").await;
            have.sort();
            have == want
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_instance_gets_no_traffic_until_it_recovers() {
    let (_mesh, orders, [(a, a_sidecar), (b, b_sidecar)]) = setup("2s").await;
    endpoints_become(&orders, &[&a_sidecar, &b_sidecar]).await;
    let traffic = Traffic::start(orders.outbound, "payments.shop", 50_000);
    eventually("both serve", START_LIMIT, || async {
        a.requests() > 20 && b.requests() > 20
    })
    .await;

    a.set_healthy(false);
    endpoints_become(&orders, &[&b_sidecar]).await;
    let a_out = a.requests();
    let b_now = b.requests();
    eventually("b serves on", START_LIMIT, || async {
        b.requests() > b_now + 100
    })
    .await;
    assert_eq!(a.requests(), a_out, "no traffic to the unhealthy instance");

    a.set_healthy(true);
    endpoints_become(&orders, &[&a_sidecar, &b_sidecar]).await;
    eventually("a serves again", START_LIMIT, || async {
        a.requests() > a_out + 20
    })
    .await;

    traffic.expect_no_failures().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_sidecar_leaves_the_endpoint_set() {
    let (_mesh, orders, [(_a, a_sidecar), (_b, mut b_sidecar)]) = setup("2s").await;
    endpoints_become(&orders, &[&a_sidecar, &b_sidecar]).await;
    // No goodbye: SIGKILL, so only the missing heartbeats tell.
    b_sidecar.process.kill();
    endpoints_become(&orders, &[&a_sidecar]).await;
    // Everything goes to the survivor now.
    for _ in 0..50 {
        let reply = outrigger_tests::get_h1(orders.outbound, "payments.shop", "/")
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json()["app"], "a");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_sidecar_deregisters_at_once() {
    // A TTL far beyond the wait below: only the sidecar's goodbye can explain its removal.
    let (mesh, orders, [(_a, a_sidecar), (_b, b_sidecar)]) = setup("1h").await;
    endpoints_become(&orders, &[&a_sidecar, &b_sidecar]).await;
    b_sidecar.process.terminate();
    endpoints_become(&orders, &[&a_sidecar]).await;
    let status = mesh.status().await;
    assert!(
        status["proxies"].as_array().is_some_and(|p| p.len() >= 2),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_restart_never_empties_a_registered_service() {
    // Heartbeats every 2s (the default); the restarted control plane waits 3s before
    // streaming, so the instance is registered again before any watcher is served.
    let mut mesh = Mesh::new().control_plane_args(&[
        "--registration-ttl",
        "2s",
        "--registration-warmup",
        "3s",
    ]);
    mesh.write_policy("payments.yaml", PAYMENTS);
    mesh.start_control_plane().await;
    let orders = mesh
        .sidecar("orders", "shop/orders", None, free_port())
        .await;
    let app = EchoApp::start("a").await;
    let sidecar = mesh.spawn_sidecar(
        "payments",
        "shop/payments",
        Some(app.addr),
        free_port(),
        &[("OUTRIGGER_HEARTBEAT_INTERVAL", "2s")],
    );
    sidecar.wait_ready().await;
    endpoints_become(&orders, &[&sidecar]).await;
    let traffic = Traffic::start(orders.outbound, "payments.shop", 50_000);
    eventually("traffic flows", START_LIMIT, || async {
        app.requests() > 20
    })
    .await;

    mesh.kill_control_plane();
    mesh.start_control_plane().await;
    // Orders reconnects and is served a config again, with the instance in it.
    let version = mesh.status().await["version"]
        .as_u64()
        .expect("the control plane reports its version");
    eventually(
        "orders applies the restarted control plane's config",
        START_LIMIT,
        || {
            let orders = &orders;
            async move {
                let applied = orders.config().await["config_version"].as_u64();
                applied.expect("the sidecar reports its version") >= version
            }
        },
    )
    .await;
    endpoints_become(&orders, &[&sidecar]).await;
    let now = app.requests();
    eventually("traffic flows on", START_LIMIT, || async {
        app.requests() > now + 50
    })
    .await;

    traffic.expect_no_failures().await;
}
