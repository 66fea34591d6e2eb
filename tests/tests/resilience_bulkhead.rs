//! Bulkheads per destination service in the caller's sidecar: a slow service flooded with
//! requests fills its own bulkhead (the excess gets 503 `bulkhead-full` without touching
//! it, and it never sees more than its limit at once), while calls from the same sidecar
//! to another service all succeed. Assertions are on counts, never on times.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use outrigger_tests::{
    Call, EchoApp, Mesh, START_LIMIT, eventually, free_port, loopback, send_many, tally,
};

/// Flooding workers and the requests each sends at most.
const FLOODERS: usize = 8;
const FLOOD_LIMIT: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_service_fills_only_its_own_bulkhead() {
    let (slow, fast) = (EchoApp::start("slow").await, EchoApp::start("fast").await);
    let (slow_port, fast_port) = (free_port(), free_port());
    let mut mesh = Mesh::new();
    mesh.add_service("shop", "slow", "shop/slow", &[loopback(slow_port)]);
    mesh.add_service("shop", "fast", "shop/fast", &[loopback(fast_port)]);
    mesh.traffic_policy(
        "shop",
        "slow",
        "  bulkhead: {maxConcurrentRequests: 2, maxPendingRequests: 1, queueTimeout: 100ms}\n",
    );
    mesh.start_control_plane().await;
    let _slow_sidecar = mesh
        .sidecar("slow-0", "shop/slow", Some(slow.addr), slow_port)
        .await;
    let _fast_sidecar = mesh
        .sidecar("fast-0", "shop/fast", Some(fast.addr), fast_port)
        .await;
    let orders = mesh
        .sidecar("orders", "shop/orders", None, free_port())
        .await;
    slow.set_delay(Duration::from_millis(200));

    // Flood the slow service from many connections at once, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let outbound = orders.outbound;
    let flooders: Vec<_> = (0..FLOODERS)
        .map(|_| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut replies = Vec::new();
                for _ in 0..FLOOD_LIMIT {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    replies.push(Call::get("slow.shop", "/").send(outbound).await);
                    // Rejections are instant: do not spin the shared machine.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                replies
            })
        })
        .collect();
    eventually("the slow service is saturated", START_LIMIT, || async {
        slow.in_flight() >= 2
    })
    .await;

    // Meanwhile, through the same sidecar, the other service is untouched by it.
    let fast_replies = send_many(outbound, &Call::get("fast.shop", "/"), 100, 4).await;
    stop.store(true, Ordering::SeqCst);
    let mut slow_replies = Vec::new();
    for flooder in flooders {
        slow_replies.extend(flooder.await.expect("flooder"));
    }

    let fast_counts = tally(&fast_replies);
    assert_eq!(
        fast_counts.get("200"),
        Some(&100),
        "the second service sees no error: {fast_counts:?}"
    );
    let slow_counts = tally(&slow_replies);
    let (ok, full) = (
        slow_counts.get("200").copied().unwrap_or(0),
        slow_counts.get("503 bulkhead-full").copied().unwrap_or(0),
    );
    assert_eq!(
        ok + full,
        slow_replies.len(),
        "answered or refused by the bulkhead: {slow_counts:?}"
    );
    assert!(ok >= 1 && full >= 1, "{slow_counts:?}");
    assert!(
        slow.peak_in_flight() <= 2,
        "the slow app saw {} requests at once (maxConcurrentRequests 2)",
        slow.peak_in_flight()
    );
    assert_eq!(slow.requests(), ok, "refused requests never reach the app");
    let refused = slow_replies
        .iter()
        .flatten()
        .find(|r| r.mesh_error() == Some("bulkhead-full"))
        .expect("a refusal");
    assert_eq!(refused.status, 503);
    assert_eq!(refused.json()["error"], "bulkhead-full");

    let rejected = |service: &'static str| {
        let orders = &orders;
        async move {
            orders
                .metric_sum("outrigger_bulkhead_rejected_total", &[("service", service)])
                .await
        }
    };
    assert_eq!(rejected("slow.shop").await, full as f64);
    assert_eq!(rejected("fast.shop").await, 0.0);
    let errors = orders
        .metric_sum(
            "outrigger_requests_total",
            &[
                ("direction", "outbound"),
                ("service", "slow.shop"),
                ("status_code", "503"),
                ("error", "bulkhead-full"),
            ],
        )
        .await;
    assert_eq!(
        errors, full as f64,
        "requests_total{{error=\"bulkhead-full\"}}"
    );
}
