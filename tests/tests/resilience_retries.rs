//! Retries in the caller's sidecar: they hide transient failures from the caller, carry
//! `outrigger-retry-attempt` to the app, prefer another instance, leave non-idempotent
//! methods alone, and stay within the retry budget when the upstream fails for good.
//! Assertions are on request counts seen by the apps and the caller, never on times.

use outrigger_tests::{Call, Cluster, Fault, PAYMENTS, send_many, tally};

/// The breaker out of the way (nothing is ever ejected), so that the request counts are
/// the retry layer's alone.
const NO_EJECTION: &str =
    "  circuitBreaker: {consecutiveFailures: 1000000, maxEjectedPercent: 0}\n";

fn failures(counts: &std::collections::BTreeMap<String, usize>) -> usize {
    counts
        .iter()
        .filter(|(outcome, _)| *outcome != "200")
        .map(|(_, n)| n)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_hide_a_30_percent_transient_failure_rate() {
    // Five retries: all six tries fail for 0.3^6 < 0.1% of requests. A budget that never
    // runs out here (about 0.43 retries per request are needed).
    let cluster = Cluster::start(
        3,
        Some(
            "  retries: {attempts: 5, retryOn: [5xx], backoff: {base: 1ms, max: 5ms}, budget: {ratio: 1.0, minPerSecond: 10, window: 10s}}\n",
        ),
    )
    .await;
    for app in &cluster.apps {
        app.set_fault(Fault {
            rate: Some(0.3),
            ..Fault::status(503)
        });
    }
    const N: usize = 500;
    let replies = cluster.get_many("/", N, 10).await;
    let counts = tally(&replies);
    assert!(
        failures(&counts) <= N / 100,
        "at most 1% of {N} fail: {counts:?}"
    );

    // The apps saw the retries, each marked, and nothing else beyond the first tries.
    let received: usize = cluster.received().iter().sum();
    let retried: usize = cluster.apps.iter().map(|a| a.retried()).sum();
    assert!(
        retried >= N / 10,
        "about 0.43 retries per request: {retried}"
    );
    assert_eq!(
        received,
        N + retried,
        "every request beyond the {N} first tries carried outrigger-retry-attempt"
    );
    let attempts: Vec<u64> = replies
        .iter()
        .flatten()
        .filter(|r| r.status == 200)
        .filter_map(|r| r.json()["retry_attempt"].as_str()?.parse().ok())
        .collect();
    assert!(!attempts.is_empty(), "some answers came from retries");
    assert!(
        attempts.iter().all(|n| (1..=5).contains(n)),
        "outrigger-retry-attempt counts from 1: {attempts:?}"
    );
    let metric = cluster
        .orders
        .metric_sum("outrigger_retries_total", &[("service", PAYMENTS)])
        .await;
    assert_eq!(metric, retried as f64, "retries_total");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_goes_to_another_instance() {
    // The failing instance answers fast, so latency-aware balancing alone would keep
    // picking it: only the preference for another endpoint saves the retry.
    let cluster = Cluster::start(
        2,
        Some(&format!(
            "  retries: {{attempts: 1, retryOn: [5xx], backoff: {{base: 1ms, max: 5ms}}, budget: {{ratio: 1.0, minPerSecond: 100, window: 10s}}}}\n{NO_EJECTION}"
        )),
    )
    .await;
    let (bad, good) = (&cluster.apps[0], &cluster.apps[1]);
    bad.set_fault(Fault::status(503));
    let replies = cluster.get_many("/", 100, 4).await;
    let counts = tally(&replies);
    let seen = format!(
        "{counts:?}; failing instance: {} requests ({} retries), other: {} ({} retries)",
        bad.requests(),
        bad.retried(),
        good.requests(),
        good.retried()
    );
    assert_eq!(counts.get("200"), Some(&100), "{seen}");
    assert!(bad.requests() > 0, "the failing instance got first tries");
    assert_eq!(
        bad.retried(),
        0,
        "no retry went back to the failing instance"
    );
    assert_eq!(
        good.retried(),
        bad.requests(),
        "each failed first try was retried once, on the other instance"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_idempotent_methods_are_retried() {
    let cluster = Cluster::start(
        1,
        Some(&format!(
            "  retries: {{attempts: 2, retryOn: [5xx], backoff: {{base: 1ms, max: 5ms}}, budget: {{ratio: 1.0, minPerSecond: 100, window: 10s}}}}\n{NO_EJECTION}"
        )),
    )
    .await;
    let app = &cluster.apps[0];
    app.set_fault(Fault::status(503));
    const EACH: usize = 5;
    for (method, tries) in [
        ("POST", 1),
        ("PATCH", 1),
        ("GET", 3),
        ("PUT", 3),
        ("DELETE", 3),
    ] {
        let before = app.requests();
        let replies = send_many(
            cluster.orders.outbound,
            &Call::new(method, PAYMENTS, "/orders/1"),
            EACH,
            1,
        )
        .await;
        let counts = tally(&replies);
        assert_eq!(counts.get("503"), Some(&EACH), "{method}: {counts:?}");
        assert_eq!(
            app.requests() - before,
            EACH * tries,
            "{method}: {tries} tries per request"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_caps_extra_load_when_the_upstream_always_fails() {
    // Three retries per request would make 4 upstream requests of each; the budget allows
    // 20% more than the requests, plus 1/s over 10s.
    let cluster = Cluster::start(
        1,
        Some(&format!(
            "  retries: {{attempts: 3, retryOn: [5xx], backoff: {{base: 1ms, max: 5ms}}, budget: {{ratio: 0.2, minPerSecond: 1, window: 10s}}}}\n{NO_EJECTION}"
        )),
    )
    .await;
    let app = &cluster.apps[0];
    app.set_fault(Fault::status(503));
    const N: usize = 200;
    let replies = cluster.get_many("/", N, 4).await;
    let counts = tally(&replies);
    assert_eq!(
        counts.get("503"),
        Some(&N),
        "the app's own 503 comes back once retries are spent or refused: {counts:?}"
    );
    let upstream = app.requests();
    let cap = N + N / 5 + 10;
    assert!(
        upstream <= cap + 5,
        "{upstream} upstream requests for {N}: the budget allows {cap} (4 × {N} without it)"
    );
    assert!(upstream > N, "the budget's reserve allowed some retries");
    assert_eq!(app.retried(), upstream - N, "every retry was marked");
    let retries = cluster
        .orders
        .metric_sum("outrigger_retries_total", &[("service", PAYMENTS)])
        .await;
    assert_eq!(retries, (upstream - N) as f64, "retries_total");
    let exhausted = cluster
        .orders
        .metric_sum(
            "outrigger_retry_budget_exhausted_total",
            &[("service", PAYMENTS)],
        )
        .await;
    assert!(exhausted > 0.0, "retry_budget_exhausted_total: {exhausted}");
}
