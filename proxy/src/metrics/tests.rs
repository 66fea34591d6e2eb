//! The metrics' unit tests: the page's shape, and docs/metrics.md against the code.

use super::*;

fn page(registry: &ProxyMetrics) -> String {
    registry.encode(&[])
}

#[tokio::test]
async fn the_page_counts_the_runtime_s_live_tasks() {
    let registry = ProxyMetrics::new();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let waiting = tokio::spawn(async move {
        let _ = rx.await;
    });
    registry.sample_runtime();
    assert!(
        page(&registry).contains("outrigger_runtime_alive_tasks 1\n"),
        "{}",
        page(&registry)
    );
    let _ = tx.send(());
    waiting.await.expect("the task ends");
    registry.sample_runtime();
    assert!(page(&registry).contains("outrigger_runtime_alive_tasks 0\n"));
}

#[test]
fn renders_counts_errors_and_buckets() {
    let registry = ProxyMetrics::new();
    let m = registry.service(Direction::Outbound, "payments.shop");
    assert!(Arc::ptr_eq(
        &m,
        &registry.service(Direction::Outbound, "payments.shop")
    ));
    m.record_status(200, Duration::from_micros(700));
    m.record_status(200, Duration::from_millis(3));
    m.record_error(ErrorCode::NoEndpoints, Duration::from_micros(10));
    m.record_status(299, Duration::from_micros(10));
    let text = page(&registry);
    let edge = "direction=\"outbound\",service=\"payments.shop\",caller=\"\",route=\"\"";
    assert!(
        text.contains(&format!(
            "outrigger_requests_total{{{edge},status_code=\"200\",error=\"\"}} 2"
        )),
        "{text}"
    );
    assert!(text.contains("status_code=\"503\",error=\"no-endpoints\"} 1"));
    assert!(
        text.contains(&format!(
            "outrigger_request_duration_seconds_bucket{{le=\"0.001\",{edge}}} 3"
        )),
        "{text}"
    );
    assert!(text.contains(&format!("{{le=\"+Inf\",{edge}}} 4")));
    assert!(text.contains("status_code=\"2xx\",error=\"\"} 1"), "{text}");
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn callers_and_routes_are_edges_of_their_own() {
    let registry = ProxyMetrics::new();
    let inbound = registry.service(Direction::Inbound, "payments.shop");
    let orders = "spiffe://cluster.local/ns/shop/sa/orders";
    let edge = inbound.edge(orders, "");
    assert!(Arc::ptr_eq(&edge, &inbound.edge(orders, "")));
    assert!(Arc::ptr_eq(inbound.requests(), &inbound.edge("", "")));
    edge.record_status(200, Duration::from_micros(80));
    let outbound = registry.service(Direction::Outbound, "payments.shop");
    outbound
        .edge("", "refunds")
        .record_error(ErrorCode::Timeout, Duration::from_secs(1));
    let text = page(&registry);
    assert!(text.contains(&format!(
        "outrigger_requests_total{{direction=\"inbound\",service=\"payments.shop\",caller=\"{orders}\",route=\"\",status_code=\"200\",error=\"\"}} 1"
    )), "{text}");
    assert!(text.contains(
        "outrigger_requests_total{direction=\"outbound\",service=\"payments.shop\",caller=\"\",route=\"refunds\",status_code=\"504\",error=\"timeout\"} 1"
    ), "{text}");
}

#[test]
fn a_service_whose_handle_is_dropped_leaves_the_page() {
    let registry = ProxyMetrics::new();
    let kept = registry.service(Direction::Outbound, "kept.shop");
    let gone = registry.service(Direction::Outbound, "gone.shop");
    kept.record_status(200, Duration::from_micros(100));
    gone.record_status(200, Duration::from_micros(100));
    gone.resilience.retries.inc();
    gone.tcp.opened();
    gone.edge("", "named")
        .record_status(500, Duration::from_micros(5));
    drop(gone);
    let text = page(&registry);
    assert!(text.contains("kept.shop"));
    assert!(!text.contains("gone.shop"), "{text}");
}

#[test]
fn a_handle_made_again_continues_the_counts() {
    let registry = ProxyMetrics::new();
    let first = registry.service(Direction::Outbound, "a.shop");
    first.record_status(200, Duration::from_micros(100));
    let second = registry.service(Direction::Outbound, "a.shop");
    drop(first);
    second.record_status(200, Duration::from_micros(100));
    assert!(page(&registry).contains("status_code=\"200\",error=\"\"} 2"));
}

#[test]
fn inflight_guard_decrements() {
    let registry = ProxyMetrics::new();
    let m = registry.service(Direction::Inbound, "a");
    let guard = m.start();
    assert_eq!(m.inflight.get(), 1);
    drop(guard);
    assert_eq!(m.inflight.get(), 0);
}

#[test]
fn the_classic_page_names_each_family_once_with_its_samples_name() {
    let registry = ProxyMetrics::new();
    let held = registry.service(Direction::Outbound, "a.shop");
    held.record_status(200, Duration::from_micros(100));
    let classic = outrigger_api::exposition::classic(&page(&registry));
    assert!(classic.contains("# TYPE outrigger_requests_total counter\n"));
    assert!(classic.contains("# TYPE outrigger_request_duration_seconds histogram\n"));
    assert!(!classic.contains("# EOF"));
}

/// The families of docs/metrics.md's proxy table.
fn documented() -> std::collections::BTreeSet<String> {
    include_str!("../../../docs/metrics.md")
        .lines()
        .filter_map(|line| line.strip_prefix("| `outrigger_"))
        .filter_map(|rest| rest.split('`').next())
        .filter(|name| !name.starts_with("control_plane_"))
        .map(|name| format!("outrigger_{name}"))
        .collect()
}

#[test]
fn every_family_is_documented_and_every_documented_family_exists() {
    let registry = ProxyMetrics::new();
    let held = registry.service(Direction::Outbound, "a.shop");
    held.record_status(200, Duration::from_micros(100));
    let mut grpc = http::HeaderMap::new();
    grpc.insert("grpc-status", http::HeaderValue::from_static("0"));
    held.requests().grpc.record(&grpc);
    held.tcp.opened();
    held.tcp.closed(1, 1, Duration::from_millis(1));
    registry
        .http_refusals(Direction::Inbound, "connection-limit")
        .inc();
    held.requests().denials.record(Denied::Http);
    let tracing = crate::trace::TraceCounters::default().registry();
    let classic = outrigger_api::exposition::classic(&registry.encode(&[&tracing]));
    let mut encoded: std::collections::BTreeSet<String> = classic
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split(' ').next())
        .map(str::to_string)
        .collect();
    // Encoded at scrape time from the breakers (`circuits_view.rs`).
    encoded.insert("outrigger_circuit_state".into());
    assert_eq!(encoded, documented());
}
