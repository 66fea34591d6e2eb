//! ServerPolicy protection on the inbound side: a rate limit answers the excess with 429
//! `rate-limited` and `retry-after`, and a concurrency limit (with a queue of the same
//! size, waiting up to 1s) answers beyond it with 503 `bulkhead-full`, sparing the app.
//! Requests go through the caller's sidecar, as an app's would. Assertions are on
//! statuses and counts.

use std::sync::Arc;
use std::time::Instant;

use outrigger_tests::{
    Call, EchoApp, Mesh, PAYMENTS, START_LIMIT, Sidecar, eventually, free_port, loopback,
    send_many, tally,
};

/// payments (an echo app behind a sidecar named after the service, so that it gets the
/// ServerPolicy) with this ServerPolicy `spec`, and an orders sidecar to call it through.
async fn payments(spec: &str) -> (Mesh, Sidecar, Sidecar, Arc<EchoApp>) {
    let app = EchoApp::start("payments").await;
    let port = free_port();
    let mut mesh = Mesh::new();
    mesh.add_service("shop", "payments", "shop/payments", &[loopback(port)]);
    mesh.server_policy("shop", "payments", spec);
    mesh.start_control_plane().await;
    let payments = mesh
        .sidecar("payments", "shop/payments", Some(app.addr), port)
        .await;
    let orders = mesh
        .sidecar("orders", "shop/orders", None, free_port())
        .await;
    (mesh, payments, orders, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_answers_the_excess_with_429() {
    let (_mesh, payments, orders, app) =
        payments("  rateLimit: {requestsPerSecond: 5, burst: 5}\n").await;
    let started = Instant::now();
    let replies = send_many(orders.outbound, &Call::get(PAYMENTS, "/"), 20, 20).await;
    let elapsed = started.elapsed();
    let counts = tally(&replies);
    let (ok, limited) = (
        counts.get("200").copied().unwrap_or(0),
        counts.get("429 rate-limited").copied().unwrap_or(0),
    );
    assert_eq!(ok + limited, 20, "{counts:?}");
    // The burst passes; beyond it, only what refilled while the 20 were sent.
    let refilled = 5 * (elapsed.as_secs() as usize + 1);
    assert!(
        (5..=5 + refilled).contains(&ok),
        "{ok} passed in {elapsed:?}: {counts:?}"
    );
    assert!(limited >= 1, "{counts:?}");
    assert_eq!(app.requests(), ok, "limited requests never reach the app");
    for reply in replies.iter().flatten().filter(|r| r.status == 429) {
        let retry_after = reply
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("429 without retry-after: {:?}", reply.headers));
        assert!(
            retry_after.parse::<u64>().is_ok(),
            "retry-after in seconds: {retry_after}"
        );
        assert_eq!(reply.json()["error"], "rate-limited");
    }
    let metric = payments
        .metric_sum(
            "outrigger_requests_total",
            &[
                ("direction", "inbound"),
                ("status_code", "429"),
                ("error", "rate-limited"),
            ],
        )
        .await;
    assert_eq!(
        metric, limited as f64,
        "requests_total{{error=\"rate-limited\"}}"
    );
}

/// Sends `GET path` to payments through `orders` in the background.
fn spawn_get(orders: &Sidecar, path: &str) -> tokio::task::JoinHandle<String> {
    let (outbound, path) = (orders.outbound, path.to_string());
    tokio::spawn(async move {
        let reply = Call::get(PAYMENTS, &path).send(outbound).await;
        outrigger_tests::outcome(&reply)
    })
}

async fn wait_held(app: &EchoApp, n: usize) {
    tokio::time::timeout(START_LIMIT, app.wait_held(n))
        .await
        .unwrap_or_else(|_| panic!("gave up waiting for {n} held requests"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_limit_queues_then_refuses_with_503() {
    let (_mesh, payments, orders, app) = payments("  concurrency: {max: 1}\n").await;

    // One request held in the app fills the limit; the next one waits in the queue, and
    // one more finds the queue full.
    let held = spawn_get(&orders, "/hold");
    wait_held(&app, 1).await;
    let queued = spawn_get(&orders, "/");
    // The queued request is in payments' sidecar (in flight there, not in the app).
    eventually("a request waits in the queue", START_LIMIT, || async {
        payments
            .metric_sum(
                "outrigger_inflight_requests",
                &[("direction", "inbound"), ("service", "payments")],
            )
            .await
            == 2.0
    })
    .await;
    let refused = spawn_get(&orders, "/").await.expect("request task");
    assert_eq!(refused, "503 bulkhead-full", "the queue (size 1) is full");
    // The held request finishes; the queued one takes its place.
    app.release(1);
    assert_eq!(held.await.expect("request task"), "200");
    assert_eq!(
        queued.await.expect("request task"),
        "200",
        "served from the queue"
    );

    // A queued request that waits longer than the queue timeout (1s) is refused.
    let held = spawn_get(&orders, "/hold");
    wait_held(&app, 2).await;
    let timed_out = spawn_get(&orders, "/").await.expect("request task");
    assert_eq!(timed_out, "503 bulkhead-full", "after the queue timeout");
    app.release(1);
    assert_eq!(held.await.expect("request task"), "200");

    assert_eq!(app.requests(), 3, "refused requests never reach the app");
    assert_eq!(app.peak_in_flight(), 1, "never more than max: 1 in the app");
    let metric = payments
        .metric_sum(
            "outrigger_requests_total",
            &[
                ("direction", "inbound"),
                ("status_code", "503"),
                ("error", "bulkhead-full"),
            ],
        )
        .await;
    assert_eq!(metric, 2.0, "requests_total{{error=\"bulkhead-full\"}}");
}
