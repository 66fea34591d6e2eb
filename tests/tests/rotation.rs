//! Certificates of a few seconds' life rotate under continuous traffic without a single
//! failed request.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use outrigger_tests::{EchoApp, Http1, Mesh, free_port, get_h1, loopback};

const EXPIRY: &str = "outrigger_certificate_expiry_timestamp_seconds";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_flows_across_several_rotations() {
    let app = EchoApp::start("payments").await;
    let port = free_port();
    let mut mesh = Mesh::new().cert_ttl("3s");
    mesh.add_service("shop", "payments", "shop/payments", &[loopback(port)]);
    mesh.start_control_plane().await;
    let orders = mesh
        .sidecar("orders", "shop/orders", None, free_port())
        .await;
    let payments = mesh
        .sidecar("payments", "shop/payments", Some(app.addr), port)
        .await;

    let mut kept_alive = Http1::connect(orders.outbound).await.unwrap();
    let (mut seen_orders, mut seen_payments) = (HashSet::new(), HashSet::new());
    let (mut sent, mut failed) = (0u32, Vec::new());
    // Bounded: at most 60s or 20k requests; normally ends after ~4 rotations (~9s).
    let deadline = Instant::now() + Duration::from_secs(60);
    while (seen_orders.len() < 4 || seen_payments.len() < 4)
        && Instant::now() < deadline
        && sent < 20_000
    {
        for _ in 0..20 {
            // Mostly a kept-alive connection, sometimes a new one.
            let reply = if sent % 10 == 0 {
                get_h1(orders.outbound, "payments.shop", "/").await
            } else {
                kept_alive.get("payments.shop", "/", &[]).await
            };
            sent += 1;
            match reply {
                Ok(r) if r.status == 200 => {}
                other => failed.push(format!("{other:?}")),
            }
        }
        seen_orders.extend(orders.metric(EXPIRY).await.map(|v| v as i64));
        seen_payments.extend(payments.metric(EXPIRY).await.map(|v| v as i64));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "{sent} requests across {} and {} certificates",
        seen_orders.len(),
        seen_payments.len()
    );
    assert!(seen_orders.len() >= 4, "orders rotated: {seen_orders:?}");
    assert!(
        seen_payments.len() >= 4,
        "payments rotated: {seen_payments:?}"
    );
    assert!(
        failed.is_empty(),
        "{} of {sent} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert_eq!(app.requests(), sent as usize);
}
