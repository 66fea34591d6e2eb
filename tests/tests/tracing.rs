//! Tracing across the mesh: the trace context both sidecars pass on, the access log lines
//! they write, and the spans they send to a collector (a stand-in on 127.0.0.1).

use std::sync::Arc;
use std::time::Duration;

use outrigger_tests::{
    EchoApp, Http1, Mesh, OtlpReceiver, ReceivedSpan, START_LIMIT, Sidecar, eventually, free_port,
    loopback,
};
use serde_json::Value;

const ORDERS: &str = "spiffe://cluster.local/ns/shop/sa/orders";
const PAYMENTS: &str = "spiffe://cluster.local/ns/shop/sa/payments";

/// The payments route that the access log and spans must name; retried on 503 so that
/// a retry count can be seen.
const TRAFFIC: &str = "  routes:\n    - name: charge\n      match: {pathPrefix: /charge}\n      retries: {attempts: 2, retryOn: [\"503\"], backoff: {base: 1ms, max: 2ms}}\n";

struct Traced {
    _mesh: Mesh,
    orders: Sidecar,
    payments: Sidecar,
    _app: Arc<EchoApp>,
}

/// orders (no app) → payments (an echo app), both sidecars logging and exporting to
/// `collector`.
async fn traced_mesh(collector: &OtlpReceiver, extra: &[(&str, &str)]) -> Traced {
    let app = EchoApp::start("payments").await;
    let payments_port = free_port();
    let mut mesh = Mesh::new();
    mesh.add_service(
        "shop",
        "payments",
        "shop/payments",
        &[loopback(payments_port)],
    );
    mesh.traffic_policy("shop", "payments", TRAFFIC);
    mesh.start_control_plane().await;
    let endpoint = collector.endpoint();
    let mut env = vec![
        ("OUTRIGGER_ACCESS_LOG", "json"),
        ("OUTRIGGER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OUTRIGGER_OTLP_BATCH_INTERVAL", "50ms"),
    ];
    env.extend_from_slice(extra);
    let orders = mesh.spawn_sidecar("orders", "shop/orders", None, free_port(), &env);
    let payments = mesh.spawn_sidecar(
        "payments",
        "shop/payments",
        Some(app.addr),
        payments_port,
        &env,
    );
    orders.wait_ready().await;
    payments.wait_ready().await;
    Traced {
        _mesh: mesh,
        orders,
        payments,
        _app: app,
    }
}

/// The access log lines a sidecar has written so far (its stdout and stderr share a
/// file; only access log lines are JSON objects).
fn access_log(sidecar: &Sidecar) -> Vec<Value> {
    sidecar
        .process
        .log()
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

/// Waits for the access log line of `trace_id` in `sidecar`'s log.
async fn log_line(sidecar: &Sidecar, trace_id: &str) -> Value {
    eventually("the access log line", START_LIMIT, || async {
        access_log(sidecar)
            .iter()
            .any(|l| l["trace_id"] == trace_id)
    })
    .await;
    let mut lines: Vec<Value> = access_log(sidecar)
        .into_iter()
        .filter(|l| l["trace_id"] == trace_id)
        .collect();
    assert_eq!(lines.len(), 1, "one line per request: {lines:?}");
    lines.remove(0)
}

/// Waits until the collector holds both hops' spans of `trace_id`: (client, server).
async fn both_spans(collector: &OtlpReceiver, trace_id: &str) -> (ReceivedSpan, ReceivedSpan) {
    eventually("both spans at the collector", START_LIMIT, || async {
        collector.trace(trace_id).len() >= 2
    })
    .await;
    let spans = collector.trace(trace_id);
    assert_eq!(spans.len(), 2, "one span per hop: {spans:?}");
    let kind = |k: u64| {
        spans
            .iter()
            .find(|s| s.span["kind"] == k)
            .cloned()
            .unwrap_or_else(|| panic!("no span of kind {k}: {spans:?}"))
    };
    (kind(3), kind(2))
}

/// `00-<trace>-<span>-<flags>` → (trace, span, flags).
fn fields(traceparent: &str) -> (String, String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[0], "00", "{traceparent}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_crosses_both_hops_into_the_logs_and_the_collector() {
    let collector = OtlpReceiver::start().await;
    let mesh = traced_mesh(&collector, &[]).await;

    // A request with no trace context: the outbound sidecar starts a trace.
    let mut client = Http1::connect(mesh.orders.outbound).await.unwrap();
    let reply = client.get("payments.shop", "/charge", &[]).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let seen = reply.json();
    let (trace_id, app_span, flags) = fields(seen["traceparent"].as_str().expect("traceparent"));
    assert_eq!(flags, "01", "a trace the mesh starts is sampled");
    let request_id = seen["request_id"]
        .as_str()
        .expect("x-request-id")
        .to_string();

    let (client_span, server_span) = both_spans(&collector, &trace_id).await;
    assert_eq!(client_span.service_name, "orders");
    assert_eq!(server_span.service_name, "payments");
    assert_eq!(
        client_span.span.get("parentSpanId"),
        None,
        "the outbound sidecar's span starts the trace"
    );
    let client_id = client_span.span["spanId"].as_str().unwrap().to_string();
    let server_id = server_span.span["spanId"].as_str().unwrap().to_string();
    assert_eq!(
        server_span.span["parentSpanId"], client_id,
        "the inbound span is the outbound span's child: the inbound sidecar received the outbound span"
    );
    assert_eq!(
        server_id, app_span,
        "the app sees the inbound sidecar's span"
    );
    assert_ne!(client_id, server_id, "a new span id at each hop");
    for (span, peer) in [(&client_span, PAYMENTS), (&server_span, ORDERS)] {
        assert_eq!(
            span.attribute("http.request.method").as_deref(),
            Some("GET")
        );
        assert_eq!(span.attribute("url.path").as_deref(), Some("/charge"));
        assert_eq!(
            span.attribute("http.response.status_code").as_deref(),
            Some("200")
        );
        assert_eq!(
            span.attribute("outrigger.peer_identity").as_deref(),
            Some(peer)
        );
        assert_eq!(
            span.attribute("outrigger.request_id").as_deref(),
            Some(request_id.as_str())
        );
        assert_eq!(
            span.span.get("status"),
            None,
            "a success leaves the status unset"
        );
        let start: u64 = span.span["startTimeUnixNano"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let end: u64 = span.span["endTimeUnixNano"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(start > 0 && end >= start, "{start}..{end}");
    }
    assert_eq!(
        client_span.attribute("outrigger.route").as_deref(),
        Some("charge")
    );
    assert_eq!(
        client_span.attribute("outrigger.retries").as_deref(),
        Some("0")
    );
    assert_eq!(
        client_span.attribute("outrigger.service").as_deref(),
        Some("payments.shop")
    );
    assert_eq!(
        server_span.attribute("outrigger.service").as_deref(),
        Some("payments")
    );

    // The access log lines of both hops carry the trace, their span and the request id.
    let outbound = log_line(&mesh.orders, &trace_id).await;
    assert_eq!(outbound["direction"], "outbound");
    assert_eq!(outbound["span_id"], client_id.as_str());
    assert_eq!(outbound["parent_span_id"], Value::Null);
    assert_eq!(outbound["request_id"], request_id.as_str());
    assert_eq!(outbound["identity"], ORDERS);
    assert_eq!(outbound["peer_identity"], PAYMENTS);
    assert_eq!(outbound["service"], "payments.shop");
    assert_eq!(outbound["route"], "charge");
    assert_eq!(outbound["method"], "GET");
    assert_eq!(outbound["path"], "/charge");
    assert_eq!(outbound["status"], 200);
    assert_eq!(outbound["error"], Value::Null);
    assert_eq!(outbound["retries"], 0);
    assert!(
        outbound["duration_ms"].as_f64().is_some_and(|d| d > 0.0),
        "{outbound}"
    );
    assert!(
        outbound["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z') && t.len() == 27),
        "{outbound}"
    );
    let inbound = log_line(&mesh.payments, &trace_id).await;
    assert_eq!(inbound["direction"], "inbound");
    assert_eq!(inbound["span_id"], server_id.as_str());
    assert_eq!(inbound["parent_span_id"], client_id.as_str());
    assert_eq!(inbound["request_id"], request_id.as_str());
    assert_eq!(inbound["identity"], PAYMENTS);
    assert_eq!(inbound["peer_identity"], ORDERS);
    assert_eq!(inbound["service"], "payments");
    assert_eq!(inbound["status"], 200);
    assert_eq!(inbound["retries"], Value::Null);

    // A request that comes with a trace context stays in its trace, with its tracestate
    // and request id as they were.
    let given_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let given_span = "00f067aa0ba902b7";
    let traceparent = format!("00-{given_trace}-{given_span}-01");
    let reply = client
        .get(
            "payments.shop",
            "/charge",
            &[
                ("traceparent", traceparent.as_str()),
                ("tracestate", "vendor=opaque"),
                ("x-request-id", "req-42"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let seen = reply.json();
    let (trace_id, app_span, _) = fields(seen["traceparent"].as_str().unwrap());
    assert_eq!(trace_id, given_trace, "the caller's trace is kept");
    assert_ne!(app_span, given_span);
    assert_eq!(seen["tracestate"], "vendor=opaque");
    assert_eq!(seen["request_id"], "req-42");
    let (client_span, server_span) = both_spans(&collector, given_trace).await;
    assert_eq!(client_span.span["parentSpanId"], given_span);
    assert_eq!(server_span.span["parentSpanId"], client_span.span["spanId"]);
    assert_eq!(server_span.span["spanId"], app_span.as_str());
    assert_eq!(
        log_line(&mesh.orders, given_trace).await["request_id"],
        "req-42"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_and_mesh_errors_are_in_the_access_log() {
    let collector = OtlpReceiver::start().await;
    let mesh = traced_mesh(&collector, &[]).await;
    let mut client = Http1::connect(mesh.orders.outbound).await.unwrap();

    // Every try answered 503: tried three times (the route allows two retries).
    let traceparent = "00-11111111111111111111111111111111-2222222222222222-01";
    let reply = client
        .get(
            "payments.shop",
            "/charge",
            &[("traceparent", traceparent), ("x-fault-status", "503")],
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 503, "{}", reply.body);
    let trace_id = "11111111111111111111111111111111";
    let outbound = log_line(&mesh.orders, trace_id).await;
    assert_eq!(outbound["retries"], 2, "{outbound}");
    assert_eq!(outbound["status"], 503);
    assert_eq!(
        outbound["error"],
        Value::Null,
        "the app's own 503 is no mesh error"
    );
    // The three tries are one request for the outbound sidecar, three for the inbound,
    // each a child of the one outbound span.
    eventually("four spans at the collector", START_LIMIT, || async {
        collector.trace(trace_id).len() >= 4
    })
    .await;
    let spans = collector.trace(trace_id);
    let clients: Vec<_> = spans.iter().filter(|s| s.span["kind"] == 3).collect();
    let servers: Vec<_> = spans.iter().filter(|s| s.span["kind"] == 2).collect();
    assert_eq!((clients.len(), servers.len()), (1, 3), "{spans:?}");
    assert_eq!(clients[0].span["status"]["code"], 2, "a 503 is an error");
    assert!(
        servers
            .iter()
            .all(|s| s.span["parentSpanId"] == clients[0].span["spanId"]),
        "{spans:?}"
    );
    eventually("three inbound lines", START_LIMIT, || async {
        access_log(&mesh.payments)
            .iter()
            .filter(|l| l["trace_id"] == trace_id)
            .count()
            == 3
    })
    .await;

    // A mesh error: no such service.
    let traceparent = "00-33333333333333333333333333333333-4444444444444444-01";
    let reply = client
        .get("nowhere.shop", "/", &[("traceparent", traceparent)])
        .await
        .unwrap();
    assert_eq!(reply.status, 502);
    let line = log_line(&mesh.orders, "33333333333333333333333333333333").await;
    assert_eq!(line["error"], "unknown-service");
    assert_eq!(line["status"], 502);
    assert_eq!(line["service"], Value::Null);
    assert_eq!(line["peer_identity"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_collector_costs_dropped_spans_not_requests() {
    let collector = OtlpReceiver::start_stalled().await;
    // A queue of one: the export task holds a batch the collector never answers, and
    // the queue behind it is full after one more span.
    let mesh = traced_mesh(&collector, &[("OUTRIGGER_OTLP_QUEUE_SIZE", "1")]).await;
    let mut client = Http1::connect(mesh.orders.outbound).await.unwrap();
    let mut sent = 0;
    loop {
        for _ in 0..10 {
            let reply = client.get("payments.shop", "/charge", &[]).await.unwrap();
            assert_eq!(reply.status, 200, "requests go on while spans cannot");
            sent += 1;
        }
        let dropped = mesh
            .orders
            .metric_sum("outrigger_spans_dropped_total", &[])
            .await;
        if dropped > 0.0 {
            break;
        }
        assert!(sent < 1_000, "no span dropped after {sent} requests");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        mesh.orders
            .metric_sum("outrigger_spans_exported_total", &[])
            .await,
        0.0
    );
    // The access log has its own queue: every request has its line.
    eventually("every request logged", START_LIMIT, || async {
        access_log(&mesh.orders).len() == sent
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_sidecar_sends_its_queued_spans_and_lines_before_it_exits() {
    let collector = OtlpReceiver::start().await;
    // Batches would wait an hour: only the shutdown's flush can send this span.
    let mut mesh = traced_mesh(&collector, &[("OUTRIGGER_OTLP_BATCH_INTERVAL", "1h")]).await;
    let mut client = Http1::connect(mesh.orders.outbound).await.unwrap();
    let reply = client.get("payments.shop", "/charge", &[]).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let seen = reply.json();
    let (trace_id, _, _) = fields(seen["traceparent"].as_str().unwrap());
    drop(client);
    assert!(
        collector.trace(&trace_id).is_empty(),
        "nothing sent before the drain"
    );

    mesh.orders.process.terminate();
    let status = mesh.orders.process.wait_exit(START_LIMIT);
    assert!(
        status.is_some_and(|s| s.success()),
        "exit 0 after the drain: {status:?}"
    );
    let spans = collector.trace(&trace_id);
    assert_eq!(
        spans.len(),
        1,
        "the outbound span, flushed at exit: {spans:?}"
    );
    assert_eq!(spans[0].span["kind"], 3);
    assert_eq!(
        access_log(&mesh.orders)
            .iter()
            .filter(|l| l["trace_id"] == trace_id.as_str())
            .count(),
        1
    );
}
