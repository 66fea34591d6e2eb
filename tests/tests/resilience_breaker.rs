//! Circuit breakers per endpoint, in the caller's sidecar: an instance that fails every
//! request is ejected and the caller sees no error while it is out, it comes back once it
//! heals (half-open probe, then closed); the fallback answers when every endpoint is
//! ejected; and maxEjectedPercent keeps enough endpoints in. Assertions are on counts and
//! states (polled from `/circuits`), never on times.

use outrigger_tests::{Cluster, Fault, PAYMENTS, START_LIMIT, eventually, tally};

/// Round-robin so that the failing instance keeps being chosen until it is ejected, and
/// retries on 5xx so that its failures never reach the caller (a retry prefers another
/// endpoint). Short ejections: the healed instance is back within seconds.
const EJECT_AND_RETURN: &str = "  loadBalancer: round-robin
  retries: {attempts: 2, retryOn: [5xx], backoff: {base: 1ms, max: 10ms}}
  circuitBreaker: {consecutiveFailures: 3, baseEjection: 1s, maxEjection: 2s}
";

/// Reads an endpoint's ejection count from the caller's `/circuits`.
async fn ejections(cluster: &Cluster, endpoint: &str) -> u64 {
    cluster
        .orders
        .circuit(PAYMENTS, endpoint)
        .await
        .and_then(|c| c["ejections"].as_u64())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_instance_is_ejected_and_returns_once_healed() {
    let cluster = Cluster::start(3, Some(EJECT_AND_RETURN)).await;
    let (bad, endpoint) = (&cluster.apps[2], cluster.endpoints[2].as_str());
    bad.set_fault(Fault::status(500));

    // Traffic until the caller's sidecar ejects it.
    eventually("the failing instance is ejected", START_LIMIT, || {
        let cluster = &cluster;
        async move {
            for _ in 0..3 {
                cluster.get("/").await;
            }
            cluster.circuit_states().await[2] == "open"
        }
    })
    .await;
    let circuit = cluster
        .orders
        .circuit(PAYMENTS, endpoint)
        .await
        .expect("/circuits lists the endpoint");
    assert!(circuit["ejections"].as_u64() >= Some(1), "{circuit}");
    assert!(circuit["consecutive_failures"].is_number(), "{circuit}");
    assert!(
        circuit["ejected_until"].is_number(),
        "an open circuit says until when: {circuit}"
    );
    assert!(
        circuit["why"]
            .as_str()
            .is_some_and(|why| why.contains("consecutive")),
        "{circuit}"
    );
    let state = cluster
        .orders
        .metric_sum(
            "outrigger_circuit_state",
            &[("service", PAYMENTS), ("endpoint", endpoint)],
        )
        .await;
    assert!(
        state == 1.0 || state == 2.0,
        "circuit_state is open (1), or half-open (2) already: {state}"
    );
    let enforced = cluster
        .orders
        .metric_sum(
            "outrigger_circuit_ejections_total",
            &[("service", PAYMENTS), ("kind", "enforced")],
        )
        .await;
    assert!(enforced >= 1.0, "ejections enforced: {enforced}");

    // While it is out: no error at all, and it receives nothing but half-open probes
    // (each failed probe ejects it again, so probes ≤ new ejections).
    let (bad_before, ejections_before) = (bad.requests(), ejections(&cluster, endpoint).await);
    let replies = cluster.get_many("/", 60, 1).await;
    let counts = tally(&replies);
    assert_eq!(counts.get("200"), Some(&60), "{counts:?}");
    let probes = (bad.requests() - bad_before) as u64;
    let mut new_ejections = 0;
    for _ in 0..40 {
        // Failure accounting runs off the request path: let it catch up.
        new_ejections = ejections(&cluster, endpoint).await - ejections_before;
        if new_ejections >= probes {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(
        probes <= new_ejections,
        "the ejected instance got {probes} requests but was only probed {new_ejections} times"
    );

    // Healed: a probe succeeds, the circuit closes, and it gets its share again.
    bad.set_fault(Fault::default());
    eventually("the healed instance's circuit closes", START_LIMIT, || {
        let cluster = &cluster;
        async move {
            for _ in 0..3 {
                cluster.get("/").await;
            }
            cluster.circuit_states().await[2] == "closed"
        }
    })
    .await;
    let bad_before = bad.requests();
    let replies = cluster.get_many("/", 60, 1).await;
    let counts = tally(&replies);
    assert_eq!(counts.get("200"), Some(&60), "{counts:?}");
    let share = bad.requests() - bad_before;
    assert!(
        share >= 10,
        "round-robin gives the healed instance about a third of 60: {share}"
    );
    let state = cluster
        .orders
        .metric_sum(
            "outrigger_circuit_state",
            &[("service", PAYMENTS), ("endpoint", endpoint)],
        )
        .await;
    assert_eq!(state, 0.0, "circuit_state is closed (0)");
}

/// One instance: once it is ejected there is nothing left to call.
const SINGLE: &str = "  retries: {attempts: 0}
  circuitBreaker: {consecutiveFailures: 3, baseEjection: 30s, maxEjection: 1m}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_circuit_open_is_503_circuit_open_or_the_fallback() {
    let cluster = Cluster::start(1, Some(SINGLE)).await;
    let app = &cluster.apps[0];
    app.set_fault(Fault::status(500));
    eventually("the only instance is ejected", START_LIMIT, || {
        let cluster = &cluster;
        async move {
            cluster.get("/").await;
            cluster.circuit_states().await[0] == "open"
        }
    })
    .await;

    // No fallback: the mesh's own 503, and the app is spared.
    let before = app.requests();
    for _ in 0..5 {
        let reply = cluster.get("/").await;
        assert_eq!(reply.status, 503, "{}", reply.body);
        assert_eq!(
            reply.mesh_error(),
            Some("circuit-open"),
            "{:?}",
            reply.headers
        );
        assert_eq!(reply.json()["error"], "circuit-open");
        assert!(reply.headers.get("outrigger-fallback").is_none());
    }
    assert_eq!(app.requests(), before, "an open circuit spares the app");

    // A fallback for the service and another for /charge, added live. (If the reload
    // resets the breaker, the app fails three more times before the fallback shows.)
    cluster.mesh.traffic_policy(
        "shop",
        "payments",
        &format!(
            "{SINGLE}  fallback: {{status: 200, body: '{{\"degraded\":true}}', headers: {{content-type: application/json}}}}
  routes:
    - match: {{pathPrefix: /charge}}
      fallback: {{status: 202, body: queued}}
"
        ),
    );
    eventually("the fallback answers", START_LIMIT, || {
        let cluster = &cluster;
        async move {
            cluster
                .get("/")
                .await
                .headers
                .contains_key("outrigger-fallback")
        }
    })
    .await;
    let before = app.requests();
    for _ in 0..5 {
        let reply = cluster.get("/orders/1").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json(), serde_json::json!({"degraded": true}));
        assert_eq!(reply.headers["outrigger-fallback"], "true");
        assert_eq!(reply.headers["content-type"], "application/json");
    }
    let reply = cluster.get("/charge").await;
    assert_eq!(
        reply.status, 202,
        "the route's own fallback: {}",
        reply.body
    );
    assert_eq!(reply.body, "queued");
    assert_eq!(reply.headers["outrigger-fallback"], "true");
    assert_eq!(app.requests(), before, "the fallback spares the app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_than_max_ejected_percent_are_ejected() {
    let cluster = Cluster::start(
        2,
        Some(
            "  loadBalancer: round-robin
  retries: {attempts: 0}
  circuitBreaker: {consecutiveFailures: 3, baseEjection: 30s, maxEjection: 1m, maxEjectedPercent: 50}
",
        ),
    )
    .await;
    for app in &cluster.apps {
        app.set_fault(Fault::status(500));
    }
    // Both keep failing; at every look, at most one of the two is out.
    let mut most_open = 0;
    for _ in 0..8 {
        let replies = cluster.get_many("/", 10, 1).await;
        let counts = tally(&replies);
        assert_eq!(
            counts.get("500"),
            Some(&10),
            "one endpoint is always left to answer (with its 500): {counts:?}"
        );
        let states = cluster.circuit_states().await;
        let open = states
            .iter()
            .filter(|s| *s == "open" || *s == "half-open")
            .count();
        assert!(open <= 1, "50% of 2 endpoints: {states:?}");
        most_open = most_open.max(open);
    }
    assert_eq!(most_open, 1, "one of the two was ejected");
    // The other tripped too, but was kept in: detected, not enforced.
    eventually("a second trip is detected", START_LIMIT, || {
        let cluster = &cluster;
        async move {
            cluster.get("/").await;
            cluster
                .orders
                .metric_sum(
                    "outrigger_circuit_ejections_total",
                    &[("service", PAYMENTS), ("kind", "detected")],
                )
                .await
                >= 2.0
        }
    })
    .await;
    let enforced = cluster
        .orders
        .metric_sum(
            "outrigger_circuit_ejections_total",
            &[("service", PAYMENTS), ("kind", "enforced")],
        )
        .await;
    assert_eq!(enforced, 1.0, "only one ejection was enforced");
    let states = cluster.circuit_states().await;
    assert_eq!(
        states.iter().filter(|s| *s == "open").count(),
        1,
        "{states:?}"
    );
}
