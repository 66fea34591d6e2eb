//! The trust anchor rotates under traffic between two sidecars, in the three steps of
//! docs/ca-rotation.md, with no restart and no failed request; afterwards a sidecar that
//! trusts only the new anchor reaches them. Certificates live a few seconds here, so that
//! every sidecar renews under the new issuer within the test.

use outrigger_certs::unix_now;
use outrigger_tests::{
    EchoApp, Mesh, START_LIMIT, Traffic, eventually, free_port, get_h1, loopback,
};

const TTL_SECS: i64 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anchor_rotates_under_traffic_with_no_failed_request() {
    let app = EchoApp::start("payments").await;
    let port = free_port();
    let mut mesh = Mesh::new().cert_ttl(&format!("{TTL_SECS}s"));
    mesh.add_service("shop", "payments", "shop/payments", &[loopback(port)]);
    mesh.start_control_plane().await;
    let orders = mesh
        .sidecar("orders", "shop/orders", None, free_port())
        .await;
    let payments = mesh
        .sidecar("payments", "shop/payments", Some(app.addr), port)
        .await;
    let traffic = Traffic::start(orders.outbound, "payments.shop", 200_000);
    let before = mesh.config_version().await;

    // 1. Both anchors are trusted everywhere before anything is signed by the new one.
    mesh.rotate_anchor(&["start"]);
    let both = mesh.converged_past(before).await;

    // 2. Everything new is signed under the new anchor; the sidecars renew into it. The
    //    control plane applies the step within a second: certificates issued two seconds
    //    later are surely the new issuer's.
    mesh.rotate_anchor(&["issuer"]);
    let issuer_at = unix_now();
    orders
        .wait_certificate_until(issuer_at + TTL_SECS + 2)
        .await;
    payments
        .wait_certificate_until(issuer_at + TTL_SECS + 2)
        .await;
    println!(
        "issuer step at {issuer_at}; certificates now expire at {} and {}",
        orders.certificate_expiry().await,
        payments.certificate_expiry().await
    );

    // 3. The old anchor goes. (`--force`: the command's own wait is --cert-ttl plus a
    //    minute, and this test's certificates have all been renewed, as checked above.)
    mesh.rotate_anchor(&["finish", "--force"]);
    mesh.converged_past(both).await;
    let sent_before_check = traffic.sent();
    eventually(
        "traffic goes on after the rotation",
        START_LIMIT,
        || async { traffic.sent() > sent_before_check + 50 },
    )
    .await;

    // A sidecar bootstrapped now trusts the new anchor alone (the file was replaced):
    // its call to payments needs payments' certificate under the new anchor, and
    // payments, trusting the new anchor alone, must accept its certificate.
    let billing = mesh
        .sidecar("billing", "shop/billing", None, free_port())
        .await;
    let reply = get_h1(billing.outbound, "payments.shop", "/")
        .await
        .expect("billing reaches payments");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json()["client_id"],
        "spiffe://cluster.local/ns/shop/sa/billing"
    );

    traffic.expect_no_failures().await;
}
