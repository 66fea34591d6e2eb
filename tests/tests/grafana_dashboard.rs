//! `k8s/grafana/outrigger.json` is a dashboard Grafana can import (a datasource
//! variable, every panel on it, unique ids) and every metric its queries read is one the
//! real sidecars export (or, for those that appear only with gRPC or opaque TCP traffic,
//! one docs/metrics.md lists, which a unit test ties to the code): a dashboard that
//! queries a renamed metric shows nothing, and no error says why.

use std::collections::BTreeSet;

use outrigger_tests::{EchoApp, Mesh, free_port, get_h1, loopback};

fn dashboard() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../k8s/grafana/outrigger.json");
    let text = std::fs::read_to_string(path).expect("the dashboard file");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every `outrigger_*` name in the panels' queries.
fn queried_metrics(dashboard: &serde_json::Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("a PromQL expr");
            let mut rest = expr;
            while let Some(at) = rest.find("outrigger_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                names.insert(name);
            }
        }
    }
    names
}

/// The metrics docs/metrics.md lists, with a histogram's series names.
fn documented_metrics() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md");
    let text = std::fs::read_to_string(path).expect("docs/metrics.md");
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("| `outrigger_") else {
            continue;
        };
        let name = format!("outrigger_{}", rest.split('`').next().unwrap_or_default());
        if line.contains("| histogram |") {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
        names.insert(name);
    }
    names
}

#[test]
fn the_dashboard_imports_with_a_datasource_variable() {
    let dashboard = dashboard();
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    assert!(
        variables.iter().any(|v| v["type"] == "datasource"
            && v["name"] == "datasource"
            && v["query"] == "prometheus"),
        "a Prometheus datasource variable"
    );
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        assert!(
            ids.insert(panel["id"].as_u64().expect("an id")),
            "ids are unique"
        );
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{}",
            panel["title"]
        );
        for key in ["x", "y", "w", "h"] {
            assert!(
                panel["gridPos"][key].is_u64(),
                "{} gridPos.{key}",
                panel["title"]
            );
        }
        for target in panel["targets"].as_array().expect("targets") {
            assert_eq!(target["datasource"]["uid"], "${datasource}");
        }
    }
    assert!(dashboard["schemaVersion"].as_u64().is_some());
    assert!(
        ids.len() >= 8,
        "rate, success, latency, retries, breakers, handshakes..."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_queried_metric_is_exported_by_the_sidecars() {
    let app = EchoApp::start("payments").await;
    let port = free_port();
    let mut mesh = Mesh::new();
    mesh.add_service("shop", "payments", "shop/payments", &[loopback(port)]);
    mesh.start_control_plane().await;
    let orders = mesh
        .sidecar("orders", "shop/orders", None, free_port())
        .await;
    let payments = mesh
        .sidecar("payments", "shop/payments", Some(app.addr), port)
        .await;
    let reply = get_h1(orders.outbound, "payments.shop", "/")
        .await
        .expect("a call");
    assert_eq!(reply.status, 200);

    // The families the sidecars declare (`# TYPE`), with a histogram's series names.
    let mut exported = BTreeSet::new();
    for text in [orders.metrics().await, payments.metrics().await] {
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("# TYPE ") else {
                continue;
            };
            let mut words = rest.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            exported.insert(name.to_string());
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    exported.insert(format!("{name}{suffix}"));
                }
            }
        }
    }
    // Families appear with their first series: these need gRPC or opaque TCP traffic.
    const WITH_TRAFFIC: [&str; 2] = ["outrigger_grpc_responses_total", "outrigger_tcp_open_total"];
    let queried = queried_metrics(&dashboard());
    let missing: Vec<_> = queried
        .iter()
        .filter(|name| !exported.contains(*name) && !WITH_TRAFFIC.contains(&name.as_str()))
        .collect();
    assert!(missing.is_empty(), "queried but not exported: {missing:?}");
    let documented = documented_metrics();
    let undocumented: Vec<_> = queried
        .iter()
        .filter(|name| !documented.contains(*name))
        .collect();
    assert!(
        undocumented.is_empty(),
        "queried but not in docs/metrics.md: {undocumented:?}"
    );
    // The edge panels read the callee's series by caller identity.
    let inbound = payments.metrics().await;
    assert!(
        inbound.contains("caller=\"spiffe://cluster.local/ns/shop/sa/orders\""),
        "{inbound}"
    );
}
