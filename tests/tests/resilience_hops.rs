//! Resilience across hops, A → B → C: B is a relay app (it calls C through its own
//! sidecar, passing on `outrigger-deadline-ms` and `outrigger-retry-attempt` as a
//! well-behaved app does). When C fails, retries do not multiply from hop to hop (a
//! retried request is not retried again downstream, and budgets cap the rest); when A's
//! deadline passes, B stops waiting for C. Assertions are on counts, never on times.

use std::net::SocketAddr;
use std::sync::Arc;

use outrigger_tests::{
    Call, EchoApp, Fault, Mesh, RelayApp, START_LIMIT, Sidecar, eventually, free_port, loopback,
    send_many, tally,
};

/// The test's client calls B through A's sidecar; B's relay calls C through B's sidecar.
struct Chain {
    _mesh: Mesh,
    a: Sidecar,
    b: Sidecar,
    /// B's sidecar outbound port (the one the relay calls through).
    b_outbound: SocketAddr,
    relay: Arc<RelayApp>,
    c: Arc<EchoApp>,
    _c: Sidecar,
}

/// `to_b` is the TrafficPolicy spec for calls to B (A's sidecar enforces it), `to_c` for
/// calls to C (B's sidecar enforces it).
async fn chain(to_b: &str, to_c: &str) -> Chain {
    let c = EchoApp::start("c").await;
    // The relay must know B's outbound port before B's sidecar starts.
    let b_outbound = loopback(free_port());
    let relay = RelayApp::start(b_outbound, "c.shop").await;
    let (b_port, c_port) = (free_port(), free_port());
    let mut mesh = Mesh::new();
    mesh.add_service("shop", "b", "shop/b", &[loopback(b_port)]);
    mesh.add_service("shop", "c", "shop/c", &[loopback(c_port)]);
    mesh.traffic_policy("shop", "b", to_b);
    mesh.traffic_policy("shop", "c", to_c);
    mesh.start_control_plane().await;
    let c_sidecar = mesh.sidecar("c-0", "shop/c", Some(c.addr), c_port).await;
    let b = mesh.spawn_sidecar(
        "b-0",
        "shop/b",
        Some(relay.addr),
        b_port,
        &[("OUTRIGGER_OUTBOUND_ADDR", &b_outbound.to_string())],
    );
    b.wait_ready().await;
    let a = mesh.sidecar("a", "shop/a", None, free_port()).await;
    Chain {
        _mesh: mesh,
        a,
        b,
        b_outbound,
        relay,
        c,
        _c: c_sidecar,
    }
}

/// Three retries on 5xx at each hop, and the breaker out of the way (nothing is ever
/// ejected) so that the counts are the retry layer's alone.
fn retries_with_budget(budget: &str) -> String {
    format!(
        "  retries: {{attempts: 3, retryOn: [5xx], backoff: {{base: 1ms, max: 5ms}}, budget: {budget}}}
  circuitBreaker: {{consecutiveFailures: 1000000, maxEjectedPercent: 0}}
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_is_not_retried_again_downstream() {
    // Budgets that never run out: only the no-retry-storm rule limits the count.
    let policy = retries_with_budget("{ratio: 1.0, minPerSecond: 1000, window: 10s}");
    let chain = chain(&policy, &policy).await;
    chain.c.set_fault(Fault::status(503));
    const N: usize = 10;
    let replies = send_many(chain.a.outbound, &Call::get("b.shop", "/"), N, 1).await;
    let counts = tally(&replies);
    assert_eq!(counts.get("503"), Some(&N), "{counts:?}");
    // A tries B 4 times per request. B retries (3 times) only the first of those, which
    // does not carry outrigger-retry-attempt: C gets 4 + 3 = 7 per request, not 4 × 4.
    assert_eq!(chain.relay.received(), 4 * N, "B received");
    assert_eq!(
        chain.c.requests(),
        7 * N,
        "C received (16 × {N} if retries multiplied)"
    );
    assert_eq!(chain.c.retried(), 6 * N, "C received retries (both hops')");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_budgets_keep_a_failing_chain_from_amplifying_load() {
    // Retries ≤ 20% of requests + 1/s over 10s, at each hop.
    let policy = retries_with_budget("{ratio: 0.2, minPerSecond: 1, window: 10s}");
    let chain = chain(&policy, &policy).await;
    chain.c.set_fault(Fault::status(503));
    const N: usize = 100;
    let replies = send_many(chain.a.outbound, &Call::get("b.shop", "/"), N, 4).await;
    let counts = tally(&replies);
    assert_eq!(counts.get("503"), Some(&N), "{counts:?}");
    let (b, c) = (chain.relay.received(), chain.c.requests());
    // Slack of 5 for rounding at each hop.
    assert!(
        (N..=N + N / 5 + 10 + 5).contains(&b),
        "B received {b} for {N} requests"
    );
    assert!(
        (b..=b + b / 5 + 10 + 5).contains(&c),
        "C received {c} for B's {b}"
    );
    assert!(
        c <= N * 3 / 2 + 25,
        "C received {c} for {N} requests (up to {} with retries multiplied across hops)",
        N * 16
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_stops_waiting_for_c_when_a_deadline_passes() {
    // A gives B 300ms. B's own policy for C would wait a minute: only the deadline that
    // came with the request can end its wait sooner.
    let chain = chain(
        "  timeouts: {request: 300ms}\n  retries: {attempts: 0}\n",
        "  timeouts: {request: 60s}\n",
    )
    .await;

    // The deadline travels A → B (its app passes it on) → C.
    let reply = Call::get("b.shop", "/")
        .send(chain.a.outbound)
        .await
        .expect("an answer");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let deadline: u64 = reply.json()["deadline_ms"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("outrigger-deadline-ms reaches C: {}", reply.body));
    assert!(
        (1..=300).contains(&deadline),
        "C's deadline is what is left of A's 300ms: {deadline}"
    );

    // C hangs: A's caller gets 504, and nobody keeps waiting on C.
    chain.c.set_fault(Fault {
        hang: true,
        ..Fault::default()
    });
    for _ in 0..3 {
        let reply = Call::get("b.shop", "/")
            .send(chain.a.outbound)
            .await
            .expect("an answer");
        assert_eq!(reply.status, 504, "{}", reply.body);
        assert_eq!(reply.mesh_error(), Some("timeout"), "{:?}", reply.headers);
    }
    let c = &chain.c;
    eventually("C's requests are let go", START_LIMIT, || async {
        c.in_flight() == 0
    })
    .await;
    assert_eq!(c.requests(), 4, "each request reached C once, none retried");
    // B's sidecar gave up at the deadline too. Which of its sides records it depends on a
    // race (its own deadline or the cancellation from upstream, whichever comes first),
    // so its outbound deadline is checked on its own below.
    let b = &chain.b;
    eventually("B's sidecar records the timeout", START_LIMIT, || async {
        b.metric_sum("outrigger_requests_total", &[("error", "timeout")])
            .await
            >= 1.0
    })
    .await;

    // B's sidecar itself ends a call at the deadline it is given: straight to its
    // outbound port, as its app would call.
    let reply = Call::get("c.shop", "/")
        .header("outrigger-deadline-ms", "200")
        .send(chain.b_outbound)
        .await
        .expect("an answer");
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert_eq!(reply.mesh_error(), Some("timeout"), "{:?}", reply.headers);
    let timeouts = chain
        .b
        .metric_sum(
            "outrigger_requests_total",
            &[
                ("direction", "outbound"),
                ("service", "c.shop"),
                ("error", "timeout"),
            ],
        )
        .await;
    assert!(
        timeouts >= 1.0,
        "B's sidecar counts its timeout: {timeouts}"
    );
    eventually("C's last request is let go", START_LIMIT, || async {
        c.in_flight() == 0
    })
    .await;
    assert_eq!(c.requests(), 5);
}
