//! Denied requests do not flood the log: a caller refused hundreds of times gets a line
//! or two in the callee sidecar's log (one per caller and reason per 10 s), while
//! `outrigger_authorization_denied_total` counts every denial, and the allowed requests
//! interleaved with them all reach the app. Real sidecars, real mTLS, a real control plane.

use outrigger_tests::{EchoApp, Http1, Mesh, free_port, loopback};

const ORDERS: &str = "spiffe://cluster.local/ns/shop/sa/orders";
const EVIL: &str = "spiffe://cluster.local/ns/shop/sa/evil";
const ROUNDS: usize = 300;

fn server_policy() -> String {
    "apiVersion: outrigger.dev/v1alpha1
kind: ServerPolicy
metadata: {name: payments, namespace: shop}
spec:
  targetRef: {kind: MeshService, name: payments}
  authorization:
    default: deny
    rules:
      - from: [\"spiffe://cluster.local/ns/shop/sa/orders\"]
        match: {pathPrefix: /orders}
"
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_denial_is_counted_and_few_are_logged_while_allowed_traffic_flows() {
    let app = EchoApp::start("payments").await;
    let port = free_port();
    let mut mesh = Mesh::new();
    mesh.add_service("shop", "payments", "shop/payments", &[loopback(port)]);
    mesh.write_policy("server-policy.yaml", &server_policy());
    mesh.start_control_plane().await;
    let payments = mesh
        .sidecar("payments", "shop/payments", Some(app.addr), port)
        .await;
    let orders = mesh
        .sidecar("orders", "shop/orders", None, free_port())
        .await;
    let evil = mesh.sidecar("evil", "shop/evil", None, free_port()).await;

    // Orders: allowed on /orders, denied on /admin, one after the other.
    let mut client = Http1::connect(orders.outbound).await.unwrap();
    for n in 0..ROUNDS {
        let allowed = client
            .get("payments.shop", &format!("/orders/{n}"), &[])
            .await
            .unwrap();
        assert_eq!(allowed.status, 200, "allowed request {n}: {}", allowed.body);
        let denied = client
            .get("payments.shop", &format!("/admin/{n}"), &[])
            .await
            .unwrap();
        assert_eq!(denied.status, 403, "denied request {n}");
        assert_eq!(denied.mesh_error(), Some("unauthorized"));
    }
    // Evil: denied whatever it asks.
    let mut intruder = Http1::connect(evil.outbound).await.unwrap();
    for n in 0..ROUNDS {
        let denied = intruder
            .get("payments.shop", &format!("/orders/{n}"), &[])
            .await
            .unwrap();
        assert_eq!(denied.status, 403);
    }
    assert_eq!(
        app.requests(),
        ROUNDS,
        "every allowed request reached the app"
    );

    // The metric counts every denial, per caller.
    for caller in [ORDERS, EVIL] {
        let denials = payments
            .metric_sum(
                "outrigger_authorization_denied_total",
                &[
                    ("direction", "inbound"),
                    ("service", "payments"),
                    ("caller", caller),
                    ("protocol", "http"),
                ],
            )
            .await;
        assert_eq!(denials, ROUNDS as f64, "{caller}");
    }
    let unauthorized = payments
        .metric_sum(
            "outrigger_requests_total",
            &[("direction", "inbound"), ("error", "unauthorized")],
        )
        .await;
    assert_eq!(unauthorized, 2.0 * ROUNDS as f64);

    // The log: a line or so per caller (one per 10 s), not hundreds.
    let log = payments.process.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("request denied by the server policy"))
        .collect();
    for caller in [ORDERS, EVIL] {
        let of_caller: Vec<&&str> = lines.iter().filter(|l| l.contains(caller)).collect();
        assert!(
            (1..=5).contains(&of_caller.len()),
            "{caller}: {} lines for {ROUNDS} denials",
            of_caller.len()
        );
        assert!(of_caller[0].contains("suppressed=0"), "{}", of_caller[0]);
    }
    eprintln!(
        "MEASURED {} denials, {} denial lines in the log",
        2 * ROUNDS,
        lines.len()
    );
}
