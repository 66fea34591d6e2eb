//! Timeouts in the caller's sidecar: a hanging upstream ends in 504 `timeout` at the
//! request timeout (and the deadline reaches the app as `outrigger-deadline-ms`), and a
//! per-try timeout with a retry reaches a healthy instance instead. Assertions are on
//! statuses and counts; the configured times only bound how long the test takes.

use outrigger_tests::{Call, Cluster, Fault, PAYMENTS, START_LIMIT, eventually, tally};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_upstream_gets_504_timeout() {
    let cluster = Cluster::start(1, Some("  timeouts: {request: 300ms}\n")).await;
    let app = &cluster.apps[0];

    // An answered request carries the remaining budget to the app.
    let reply = cluster.get("/").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let deadline: u64 = reply.json()["deadline_ms"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("outrigger-deadline-ms reaches the app: {}", reply.body));
    assert!(
        (1..=300).contains(&deadline),
        "at most the request timeout: {deadline}"
    );

    // Hanging requests (the fault asked per request).
    for _ in 0..3 {
        let reply = Call::get(PAYMENTS, "/")
            .header("x-fault-hang", "1")
            .send(cluster.orders.outbound)
            .await
            .expect("an answer");
        assert_eq!(reply.status, 504, "{}", reply.body);
        assert_eq!(reply.mesh_error(), Some("timeout"), "{:?}", reply.headers);
        assert_eq!(reply.json()["error"], "timeout");
    }
    assert_eq!(app.requests(), 4, "a timeout is not retried by default");
    // The caller's deadline and the callee's copy of it (`outrigger-deadline-ms`, whole
    // milliseconds) end within the same millisecond, so either sidecar may answer the
    // 504 `timeout`: the caller's counts it as its own error, or as the upstream's 504.
    let answered = |error: &'static str| {
        let orders = &cluster.orders;
        async move {
            orders
                .metric_sum(
                    "outrigger_requests_total",
                    &[
                        ("direction", "outbound"),
                        ("service", PAYMENTS),
                        ("status_code", "504"),
                        ("error", error),
                    ],
                )
                .await
        }
    };
    let (own, upstream) = (answered("timeout").await, answered("").await);
    assert_eq!(own + upstream, 3.0, "every 504 counted: {own} + {upstream}");
    // The app's sidecar stopped waiting at the deadline it was given, too.
    eventually("the hanging requests are let go", START_LIMIT, || async {
        app.in_flight() == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_try_timeout_and_a_retry_reach_the_healthy_instance() {
    // Round-robin, so that the hanging instance keeps getting first tries (until its
    // breaker ejects it; timeouts are failures).
    let cluster = Cluster::start(
        2,
        Some(
            "  loadBalancer: round-robin
  timeouts: {request: 5s}
  retries: {attempts: 2, perTryTimeout: 200ms, retryOn: [gateway-error], backoff: {base: 1ms, max: 5ms}}
",
        ),
    )
    .await;
    let (hanging, healthy) = (&cluster.apps[0], &cluster.apps[1]);
    // Connections to both first, so that every try of the test reaches an app well
    // within its 200ms.
    let counts = tally(&cluster.get_many("/", 4, 1).await);
    assert_eq!(counts.get("200"), Some(&4), "{counts:?}");
    let (hanging_before, retried_before) = (hanging.requests(), healthy.retried());
    hanging.set_fault(Fault {
        hang: true,
        ..Fault::default()
    });
    let replies = cluster.get_many("/", 20, 1).await;
    let counts = tally(&replies);
    assert_eq!(counts.get("200"), Some(&20), "{counts:?}");
    for reply in replies.iter().flatten() {
        assert_eq!(reply.json()["app"], "payments-1");
    }
    let timed_out = hanging.requests() - hanging_before;
    assert!(timed_out >= 1, "the hanging instance got first tries");
    assert_eq!(
        healthy.retried() - retried_before,
        timed_out,
        "each try that timed out was retried on the healthy instance"
    );
    let retries = cluster
        .orders
        .metric_sum("outrigger_retries_total", &[("service", PAYMENTS)])
        .await;
    assert_eq!(retries, timed_out as f64, "retries_total");
}

/// A route matched by a header gets its own timeout; requests without the header keep
/// the service's (none here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_can_match_on_a_header() {
    let policy = "  routes:\n    - match: {headers: {x-canary: \"true\"}}\n      timeouts: {request: 200ms}\n";
    let cluster = Cluster::start(1, Some(policy)).await;
    let hanging = |canary: Option<&str>| {
        let mut call = Call::get(PAYMENTS, "/").header("x-fault-delay-ms", "800");
        if let Some(value) = canary {
            call = call.header("x-canary", value);
        }
        call
    };
    let reply = hanging(Some("true"))
        .send(cluster.orders.outbound)
        .await
        .expect("an answer");
    assert_eq!(
        reply.status, 504,
        "the route's 200ms applies: {}",
        reply.body
    );
    for other in [None, Some("false")] {
        let reply = hanging(other)
            .send(cluster.orders.outbound)
            .await
            .expect("an answer");
        assert_eq!(reply.status, 200, "no match for {other:?}: {}", reply.body);
    }
}
