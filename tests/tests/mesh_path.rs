//! A request from app A reaches app B through both sidecars over mTLS, and B learns who
//! called from its sidecar, never from the caller.

use outrigger_tests::{EchoApp, Http1, Mesh, free_port, get_h1, get_h1_absolute, get_h2};

const ORDERS: &str = "spiffe://cluster.local/ns/shop/sa/orders";

/// orders (no app of its own here) → payments (an echo app).
async fn two_services() -> (
    Mesh,
    outrigger_tests::Sidecar,
    outrigger_tests::Sidecar,
    std::sync::Arc<EchoApp>,
) {
    let payments_app = EchoApp::start("payments").await;
    let payments_port = free_port();
    let mut mesh = Mesh::new();
    mesh.add_service(
        "shop",
        "payments",
        "shop/payments",
        &[outrigger_tests::loopback(payments_port)],
    );
    mesh.start_control_plane().await;
    let orders = mesh
        .sidecar("orders", "shop/orders", None, free_port())
        .await;
    let payments = mesh
        .sidecar(
            "payments",
            "shop/payments",
            Some(payments_app.addr),
            payments_port,
        )
        .await;
    (mesh, orders, payments, payments_app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_and_http2_reach_the_peer_app_with_the_callers_identity() {
    let (_mesh, orders, _payments, app) = two_services().await;

    let reply = get_h1(orders.outbound, "payments.shop", "/charge")
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let seen = reply.json();
    assert_eq!(seen["app"], "payments");
    assert_eq!(seen["path"], "/charge");
    assert_eq!(seen["client_id"], ORDERS);
    assert_eq!(
        seen["version"], "HTTP/1.1",
        "an HTTP/1.1 caller reaches the app as HTTP/1.1"
    );
    assert_eq!(seen["host"], "payments.shop");

    let reply = get_h2(orders.outbound, "payments.shop", "/grpc.Service/Call")
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let seen = reply.json();
    assert_eq!(seen["client_id"], ORDERS);
    assert_eq!(
        seen["version"], "HTTP/2.0",
        "an HTTP/2 caller reaches the app as HTTP/2"
    );

    // A bare name resolves in the caller's namespace; absolute-form URIs route too.
    let reply = get_h1(orders.outbound, "payments:8080", "/").await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = get_h1_absolute(orders.outbound, "http://payments.shop.svc.cluster.local/x")
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["path"], "/x");
    assert_eq!(app.requests(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_client_id_never_reaches_the_peer_app() {
    let (_mesh, orders, _payments, _app) = two_services().await;
    let mut client = Http1::connect(orders.outbound).await.unwrap();
    let forged = "spiffe://cluster.local/ns/kube-system/sa/admin";
    let reply = client
        .get(
            "payments.shop",
            "/",
            &[
                ("outrigger-client-id", forged),
                ("outrigger-client-id", forged),
            ],
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let seen = reply.json();
    assert_eq!(seen["client_id"], ORDERS);
    assert_eq!(
        seen["client_ids"], 1,
        "exactly one client id, the verified one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_services_and_missing_hosts_get_mesh_errors() {
    let (_mesh, orders, _payments, _app) = two_services().await;
    let reply = get_h1(orders.outbound, "nowhere.shop", "/").await.unwrap();
    assert_eq!(reply.status, 502);
    assert_eq!(reply.mesh_error(), Some("unknown-service"));
    assert_eq!(reply.json()["error"], "unknown-service");

    // Counted, with the mesh error as a label.
    let metrics = orders.metrics().await;
    assert!(
        metrics.contains("status_code=\"502\",error=\"unknown-service\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_on_both_sides() {
    let (_mesh, orders, payments, _app) = two_services().await;
    let mut client = Http1::connect(orders.outbound).await.unwrap();
    for _ in 0..5 {
        let reply = client.get("payments.shop", "/", &[]).await.unwrap();
        assert_eq!(reply.status, 200);
    }
    let outbound = orders
        .metric_sum(
            "outrigger_requests_total",
            &[
                ("direction", "outbound"),
                ("service", "payments.shop"),
                ("status_code", "200"),
                ("error", ""),
            ],
        )
        .await;
    assert_eq!(outbound, 5.0);
    // The inbound side names the caller by its verified identity: the edge orders→payments.
    let inbound = payments
        .metric_sum(
            "outrigger_requests_total",
            &[
                ("direction", "inbound"),
                ("service", "payments"),
                ("caller", "spiffe://cluster.local/ns/shop/sa/orders"),
                ("status_code", "200"),
            ],
        )
        .await;
    assert_eq!(inbound, 5.0);
    let histogram = orders
        .metric_sum(
            "outrigger_request_duration_seconds_count",
            &[("direction", "outbound"), ("service", "payments.shop")],
        )
        .await;
    assert_eq!(histogram, 5.0);
}

/// The performance budget's first rule: connections between sidecars are reused. 100
/// requests, over several client connections and both HTTP versions, cost exactly one
/// TLS handshake on each side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_requests_cost_one_tls_handshake() {
    let (_mesh, orders, payments, app) = two_services().await;
    for i in 0..100 {
        let reply = if i % 2 == 0 {
            get_h1(orders.outbound, "payments.shop", "/").await
        } else {
            get_h2(orders.outbound, "payments.shop", "/").await
        };
        assert_eq!(reply.expect("request").status, 200);
    }
    assert_eq!(app.requests(), 100);
    assert_eq!(
        handshakes(&orders).await,
        1.0,
        "orders' sidecar opened one mTLS connection"
    );
    assert_eq!(
        handshakes(&payments).await,
        1.0,
        "payments' sidecar accepted one mTLS connection"
    );
}

async fn handshakes(sidecar: &outrigger_tests::Sidecar) -> f64 {
    sidecar
        .metric_sum("outrigger_tls_handshakes_total", &[("result", "ok")])
        .await
}
