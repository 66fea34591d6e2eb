//! Exact percentiles across sidecars: two callers of payments with different latency
//! distributions (the upstream delays each caller's requests by a different amount, and
//! fails some), shipping every 200 ms. The control plane's merged numbers for payments
//! must be those of the union of both callers' own histograms, and each edge's those of
//! its caller, with the counts the test sent.

use outrigger_tests::{
    Call, EchoApp, Mesh, START_LIMIT, eventually, free_port, loopback, ms, run, send_many, stderr,
    stdout, the_error_line,
};

const FAST: usize = 150;
const SLOW: usize = 50;
/// One fast request in ten fails (the app answers 503).
const FAST_FAILURE_RATE: &str = "0.1";

#[tokio::test]
async fn merged_percentiles_are_those_of_the_union() {
    let app = EchoApp::start("payments").await;
    let port = free_port();
    let mut mesh = Mesh::new();
    mesh.add_service("shop", "payments", "shop/payments", &[loopback(port)]);
    mesh.start_control_plane().await;
    let often = [("OUTRIGGER_STATS_INTERVAL", "200ms")];
    let payments = mesh.spawn_sidecar("payments", "shop/payments", Some(app.addr), port, &often);
    let orders = mesh.spawn_sidecar("orders", "shop/orders", None, free_port(), &often);
    let billing = mesh.spawn_sidecar("billing", "shop/billing", None, free_port(), &often);
    for sidecar in [&payments, &orders, &billing] {
        sidecar.wait_ready().await;
    }

    let fast = Call::get("payments.shop", "/fast")
        .header("x-fault-delay-ms", "2")
        .header("x-fault-status", "503")
        .header("x-fault-rate", FAST_FAILURE_RATE);
    let slow = Call::get("payments.shop", "/slow").header("x-fault-delay-ms", "30");
    let (fast_replies, slow_replies) = tokio::join!(
        send_many(orders.outbound, &fast, FAST, 8),
        send_many(billing.outbound, &slow, SLOW, 4),
    );
    let failed = fast_replies
        .iter()
        .filter(|r| matches!(r, Ok(reply) if reply.status == 503))
        .count() as u64;
    assert!(
        fast_replies
            .iter()
            .chain(&slow_replies)
            .all(|r| matches!(r, Ok(reply) if reply.status == 200 || reply.status == 503)),
        "every request answered by the app"
    );

    // Every request shipped and merged.
    let total = (FAST + SLOW) as u64;
    eventually("all requests merged", START_LIMIT, || async {
        let stats = mesh.stats("15m").await;
        stats
            .services
            .iter()
            .any(|s| s.service == "payments.shop" && s.golden.requests == total)
    })
    .await;

    let stats = mesh.stats("15m").await;
    let merged = &stats
        .services
        .iter()
        .find(|s| s.service == "payments.shop")
        .unwrap()
        .golden;
    let from_orders = orders
        .totals("payments.shop")
        .await
        .expect("orders' totals");
    let from_billing = billing
        .totals("payments.shop")
        .await
        .expect("billing's totals");
    assert_eq!(from_orders.requests, FAST as u64);
    assert_eq!(from_billing.requests, SLOW as u64);
    let mut union = from_orders.latency.clone();
    union.add(&from_billing.latency).unwrap();
    assert_eq!(union.len(), total);

    // Exactly the union's percentiles: the merge loses nothing.
    assert_eq!(merged.p50_ms, Some(ms(union.value_at_quantile(0.5))));
    assert_eq!(merged.p90_ms, Some(ms(union.value_at_quantile(0.9))));
    assert_eq!(merged.p99_ms, Some(ms(union.value_at_quantile(0.99))));
    assert_eq!(merged.p999_ms, Some(ms(union.value_at_quantile(0.999))));
    assert_eq!(merged.max_ms, Some(ms(union.max())));
    // And the test's own records: what it sent, what failed, the delays it asked for.
    assert_eq!(merged.successes, total - failed);
    assert!(failed > 0, "the fault injection made some fail");
    assert!(merged.p50_ms.unwrap() >= 2.0, "{merged:?}");
    assert!(
        merged.p99_ms.unwrap() >= 30.0,
        "a quarter of the calls took 30 ms: {merged:?}"
    );

    // Each edge is its caller's, measured by the caller's sidecar.
    for (caller, totals, requests) in [
        ("shop/orders", &from_orders, FAST),
        ("shop/billing", &from_billing, SLOW),
    ] {
        let edge = stats
            .edges
            .iter()
            .find(|e| e.caller == caller && e.service == "payments.shop")
            .unwrap_or_else(|| panic!("edge {caller}: {:?}", stats.edges));
        assert_eq!(edge.side, outrigger_api::Side::Client);
        assert_eq!(edge.golden.requests, requests as u64);
        assert_eq!(edge.golden.successes, totals.successes);
        assert_eq!(
            edge.golden.p99_ms,
            Some(ms(totals.latency.value_at_quantile(0.99)))
        );
    }
    assert_eq!(
        stats.edges.len(),
        2,
        "each call counted once: {:?}",
        stats.edges
    );

    // The breaker and bulkhead state of the callers arrived too.
    let pressure = stats
        .resilience
        .iter()
        .find(|r| r.caller == "shop/orders" && r.report.service == "payments.shop")
        .unwrap_or_else(|| panic!("{:?}", stats.resilience));
    assert_eq!(pressure.report.circuits.len(), 1);
    assert_eq!(pressure.report.bulkhead_limit, 1024);

    // `outrigger stat` prints the same numbers as a table, per service and per edge.
    let http = mesh.cp_http.to_string();
    let (services, edges, unreachable) = tokio::task::spawn_blocking(move || {
        (
            run("outrigger", &["stat", "--http", &http, "--window", "15m"]),
            run(
                "outrigger",
                &["stat", "shop/payments", "--edges", "--http", &http],
            ),
            run("outrigger", &["stat", "--http", "127.0.0.1:1"]),
        )
    })
    .await
    .unwrap();
    assert!(services.status.success(), "{}", stderr(&services));
    let text = stdout(&services);
    let row = text
        .lines()
        .find(|l| l.starts_with("payments.shop "))
        .unwrap_or_else(|| panic!("{text}"));
    let success = format!("{:.2}%", merged.success_rate.unwrap() * 100.0);
    assert!(row.contains(&success), "{row} / {success}");
    let text = stdout(&edges);
    assert!(text.starts_with("CALLER "), "{text}");
    assert!(
        text.contains("\nshop/billing  payments.shop  caller "),
        "{text}"
    );
    assert!(
        text.contains("\nshop/orders   payments.shop  caller "),
        "{text}"
    );
    assert!(
        the_error_line(&unreachable)
            .contains("cannot get stats from the control plane at 127.0.0.1:1"),
        "{}",
        stderr(&unreachable)
    );
}
