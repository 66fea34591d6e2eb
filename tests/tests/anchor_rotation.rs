//! The trust anchor rotates under traffic between two sidecars, in the three steps of
//! docs/ca-rotation.md, with no restart and no failed request; afterwards a sidecar that
//! trusts only the new anchor reaches them. Certificates live a few seconds here, so that
//! every sidecar renews under the new issuer within the test.

use outrigger_certs::unix_now;
use outrigger_tests::{
    EchoApp, Mesh, START_LIMIT, Sidecar, Traffic, eventually, free_port, get_h1, loopback, run,
};

const TTL_SECS: i64 = 4;
const EXPIRY: &str = "outrigger_certificate_expiry_timestamp_seconds";

/// Runs `outrigger ca rotate <step>`; the step must succeed.
fn rotate(mesh: &Mesh, step: &[&str]) {
    let data = mesh.data_dir();
    let mut args = vec!["ca", "rotate"];
    args.extend_from_slice(step);
    args.extend_from_slice(&["--data-dir", data.to_str().expect("utf-8 path")]);
    let out = run("outrigger", &args);
    assert!(
        out.status.success(),
        "ca rotate {step:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until every connected sidecar has applied a version newer than `after`;
/// returns the version served then.
async fn converged_past(mesh: &Mesh, after: u64) -> u64 {
    eventually(
        "the sidecars apply the new bundle",
        START_LIMIT,
        || async move {
            let status = mesh.status().await;
            status["version"].as_u64().expect("a version") > after && status["converged"] == true
        },
    )
    .await;
    mesh.status().await["version"].as_u64().expect("a version")
}

/// Waits until `sidecar` holds a certificate issued at least `margin` after `since`.
async fn renewed_after(sidecar: &Sidecar, since: i64, margin: i64) {
    eventually(
        "a certificate from the new issuer",
        START_LIMIT,
        || async move {
            let expiry = sidecar.metric(EXPIRY).await.unwrap_or(0.0) as i64;
            expiry >= since + TTL_SECS + margin
        },
    )
    .await;
}

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
    let before = mesh.status().await["version"].as_u64().expect("a version");

    // 1. Both anchors are trusted everywhere before anything is signed by the new one.
    rotate(&mesh, &["start"]);
    let both = converged_past(&mesh, before).await;

    // 2. Everything new is signed under the new anchor; the sidecars renew into it. The
    //    control plane applies the step within a second: certificates issued two seconds
    //    later are surely the new issuer's.
    rotate(&mesh, &["issuer"]);
    let issuer_at = unix_now();
    renewed_after(&orders, issuer_at, 2).await;
    renewed_after(&payments, issuer_at, 2).await;
    println!(
        "issuer step at {issuer_at}; certificates now expire at {:?} and {:?}",
        orders.metric(EXPIRY).await,
        payments.metric(EXPIRY).await
    );

    // 3. The old anchor goes. (`--force`: the command's own wait is --cert-ttl plus a
    //    minute, and this test's certificates have all been renewed, as checked above.)
    rotate(&mesh, &["finish", "--force"]);
    converged_past(&mesh, both).await;
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
