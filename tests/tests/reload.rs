//! Policy edited on disk reaches the sidecars live: traffic moves with no failed request,
//! and an invalid edit changes nothing until it is fixed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use outrigger_tests::{EchoApp, Mesh, START_LIMIT, Sidecar, Traffic, eventually, free_port};

fn payments_yaml(endpoints: &[u16]) -> String {
    let endpoints: String = endpoints
        .iter()
        .map(|p| format!("    - address: 127.0.0.1:{p}\n"))
        .collect();
    // Round-robin: this file tests that edits move traffic, not how peak-EWMA weighs a
    // new endpoint (one slow first answer on a loaded machine can keep it cold for tens
    // of seconds; balancing.rs tests the balancer).
    format!(
        "apiVersion: outrigger.dev/v1alpha1\nkind: MeshService\nmetadata:\n  name: payments\n  namespace: shop\nspec:\n  identity: spiffe://cluster.local/ns/shop/sa/payments\n  endpoints:\n{endpoints}---\napiVersion: outrigger.dev/v1alpha1\nkind: TrafficPolicy\nmetadata: {{name: payments, namespace: shop}}\nspec:\n  targetRef: {{kind: MeshService, name: payments}}\n  loadBalancer: round-robin\n"
    )
}

/// Two instances of payments (A, B), each behind a sidecar; only A in the policy.
async fn setup() -> (Mesh, Sidecar, [(Arc<EchoApp>, Sidecar, u16); 2]) {
    let (a_app, b_app) = (EchoApp::start("a").await, EchoApp::start("b").await);
    let (a_port, b_port) = (free_port(), free_port());
    let mut mesh = Mesh::new();
    mesh.write_policy("payments.yaml", &payments_yaml(&[a_port]));
    mesh.start_control_plane().await;
    let orders = mesh
        .sidecar("orders", "shop/orders", None, free_port())
        .await;
    // Named apart from the MeshService so that they do not register themselves: these
    // tests move traffic by editing the static endpoints.
    let a = mesh
        .sidecar("payments-a", "shop/payments", Some(a_app.addr), a_port)
        .await;
    let b = mesh
        .sidecar("payments-b", "shop/payments", Some(b_app.addr), b_port)
        .await;
    (mesh, orders, [(a_app, a, a_port), (b_app, b, b_port)])
}

/// Waits until `app` has answered `more` requests beyond `from`.
async fn until_served(app: &EchoApp, from: usize, more: usize) {
    eventually(
        "the instance receives traffic",
        START_LIMIT,
        || async move { app.requests() >= from + more },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edited_endpoints_move_traffic_without_a_failed_request() {
    let (mesh, orders, [(a, _a_sidecar, a_port), (b, _b_sidecar, b_port)]) = setup().await;
    let traffic = Traffic::start(orders.outbound, "payments.shop", 50_000);
    until_served(&a, 0, 50).await;
    assert_eq!(b.requests(), 0, "B is not in the policy yet");

    // Add B: traffic spreads to it.
    let edited = Instant::now();
    mesh.write_policy("payments.yaml", &payments_yaml(&[a_port, b_port]));
    until_served(&b, 0, 1).await;
    println!(
        "edit → first request at the new endpoint: {:?}",
        edited.elapsed()
    );
    until_served(&b, 0, 50).await;

    // Remove A: its traffic stops; requests in flight to it still complete.
    mesh.write_policy("payments.yaml", &payments_yaml(&[b_port]));
    eventually("orders' sidecar drops A", START_LIMIT, || {
        let orders = &orders;
        async move { orders.endpoints_of("payments").await == [format!("127.0.0.1:{b_port}")] }
    })
    .await;
    let a_after = a.requests();
    until_served(&b, b.requests(), 100).await;
    assert_eq!(
        a.requests(),
        a_after,
        "no request reached A once it left the policy"
    );

    traffic.expect_no_failures().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_edit_changes_nothing_until_it_is_fixed() {
    let (mesh, orders, [(a, _a_sidecar, _), (b, _b_sidecar, b_port)]) = setup().await;
    let version_before = orders.config().await["config_version"].clone();
    let traffic = Traffic::start(orders.outbound, "payments.shop", 50_000);
    until_served(&a, 0, 20).await;

    // A typo in a field name, on line 8: rejected with file, line and field.
    let broken = payments_yaml(&[b_port]).replace("  endpoints:", "  endpoint:");
    mesh.write_policy("payments.yaml", &broken);
    eventually("the control plane reports the error", START_LIMIT, || {
        let mesh = &mesh;
        async move {
            !mesh.status().await["config_errors"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .is_empty()
        }
    })
    .await;
    let errors = mesh.status().await["config_errors"].to_string();
    assert!(
        errors.contains("payments.yaml:8") && errors.contains("endpoint"),
        "{errors}"
    );

    // The last good policy stays in force: A still serves, B gets nothing.
    let a_now = a.requests();
    until_served(&a, a_now, 50).await;
    assert_eq!(b.requests(), 0);
    assert_eq!(
        orders.config().await["config_version"],
        version_before,
        "nothing was pushed"
    );

    // The fix is applied.
    mesh.write_policy("payments.yaml", &payments_yaml(&[b_port]));
    until_served(&b, 0, 50).await;
    let status = mesh.status().await;
    assert!(
        status["config_errors"]
            .as_array()
            .is_none_or(|e| e.is_empty()),
        "{status}"
    );

    traffic.expect_no_failures().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_control_plane_breaks_nothing_and_its_return_reaches_every_proxy() {
    let (mut mesh, orders, [(a, a_sidecar, a_port), (b, b_sidecar, b_port)]) = setup().await;
    let traffic = Traffic::start(orders.outbound, "payments.shop", 50_000);
    until_served(&a, 0, 20).await;

    mesh.kill_control_plane();
    // Sidecars keep serving on their last config and certificate.
    let a_now = a.requests();
    until_served(&a, a_now, 200).await;

    // It comes back with a new policy; every proxy converges on the new version.
    mesh.write_policy("payments.yaml", &payments_yaml(&[a_port, b_port]));
    mesh.start_control_plane().await;
    until_served(&b, 0, 20).await;
    let deadline = Instant::now() + START_LIMIT;
    loop {
        let out = outrigger_tests::run(
            "outrigger",
            &["status", "--http", &mesh.cp_http.to_string()],
        );
        let (status, stdout, stderr) = (
            out.status,
            outrigger_tests::stdout(&out),
            outrigger_tests::stderr(&out),
        );
        if status.success() {
            assert!(stdout.contains("converged on version"), "{stdout}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never converged:\n{stdout}\n{stderr}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // What `outrigger status` said, each sidecar's own /config confirms.
    eventually(
        "every sidecar applies the served version",
        START_LIMIT,
        || {
            let (mesh, sidecars) = (&mesh, [&orders, &a_sidecar, &b_sidecar]);
            async move {
                let version = mesh.status().await["version"].clone();
                for sidecar in sidecars {
                    if sidecar.config().await["config_version"] != version {
                        return false;
                    }
                }
                true
            }
        },
    )
    .await;

    traffic.expect_no_failures().await;
}
