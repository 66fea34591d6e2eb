//! The control plane restarted on the same data dir keeps its CA: certificates issued
//! before the restart still verify against those issued after, and sidecars reconnect.

use outrigger_tests::{EchoApp, Mesh, START_LIMIT, eventually, free_port, get_h1, loopback};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_control_plane_keeps_its_ca() {
    let payments_app = EchoApp::start("payments").await;
    let billing_app = EchoApp::start("billing").await;
    let (payments_port, billing_port) = (free_port(), free_port());
    let mut mesh = Mesh::new();
    mesh.add_service(
        "shop",
        "payments",
        "shop/payments",
        &[loopback(payments_port)],
    );
    mesh.start_control_plane().await;
    let orders = mesh
        .sidecar("orders", "shop/orders", None, free_port())
        .await;
    let _payments = mesh
        .sidecar(
            "payments",
            "shop/payments",
            Some(payments_app.addr),
            payments_port,
        )
        .await;
    let reply = get_h1(orders.outbound, "payments.shop", "/").await.unwrap();
    assert_eq!(reply.status, 200);

    mesh.kill_control_plane();
    // While it is down, traffic between sidecars goes on.
    let reply = get_h1(orders.outbound, "payments.shop", "/").await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);

    // A new service appears with the restart.
    mesh.add_service("shop", "billing", "shop/billing", &[loopback(billing_port)]);
    mesh.start_control_plane().await;

    // The CA is the same one: billing's certificate comes from the restarted control
    // plane, orders' from before, and each side of the mTLS call below verifies the other
    // with the trust bundle it was given (orders before the restart, billing after). A
    // control plane that had made a new CA would fail both checks.
    let _billing = mesh
        .sidecar(
            "billing",
            "shop/billing",
            Some(billing_app.addr),
            billing_port,
        )
        .await;
    let outbound = orders.outbound;
    // orders learns of billing once its watch has reconnected.
    eventually("orders routes to billing", START_LIMIT, || async move {
        matches!(get_h1(outbound, "billing.shop", "/").await, Ok(r) if r.status == 200)
    })
    .await;
    let reply = get_h1(orders.outbound, "billing.shop", "/").await.unwrap();
    assert_eq!(
        reply.json()["client_id"],
        "spiffe://cluster.local/ns/shop/sa/orders"
    );
}
