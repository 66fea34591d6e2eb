//! `POST /v1/stats` as a sidecar calls it: only over mTLS; client-side series are the
//! caller's by its certificate; server-side series only count for a MeshService whose
//! identity is the reporter's; what is accepted shows in `/api/stats`.

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Serializer as _, V2Serializer};
use http::StatusCode;
use outrigger_api::{MeshStats, Side, StatsAccepted};
use outrigger_tests::{ControlPlane, Mesh, call, control_plane_tls, enroll, id};

fn report(side: &str, service: &str, latencies_us: &[u64]) -> String {
    let mut h = Histogram::<u32>::new_with_bounds(1, 100_000_000, 3).unwrap();
    for v in latencies_us {
        h.record(*v).unwrap();
    }
    let mut bytes = Vec::new();
    V2Serializer::new().serialize(&h, &mut bytes).unwrap();
    serde_json::json!({
        "proxy_id": "p-1",
        "series": [{
            "side": side,
            "service": service,
            "requests": latencies_us.len(),
            "successes": latencies_us.len(),
            "latency": base64::engine::general_purpose::STANDARD.encode(bytes),
        }],
    })
    .to_string()
}

#[tokio::test]
async fn stats_are_authenticated_and_kept_to_the_reporter() {
    let mesh = Mesh::with_payments();
    let cp = ControlPlane::start(&mesh).await;
    let anchor = mesh.anchor_pem();
    let orders = enroll(&cp, &anchor, &mesh.token("shop/orders"), &id("shop/orders")).await;
    let payments = enroll(
        &cp,
        &anchor,
        &mesh.token("shop/payments"),
        &id("shop/payments"),
    )
    .await;
    let as_orders = control_plane_tls(&anchor, Some(orders.certs.clone()));
    let as_payments = control_plane_tls(&anchor, Some(payments.certs.clone()));
    let server_side = report("server", "payments.shop", &[1_000, 2_000, 30_000]);

    let (status, body) = call(
        cp.api,
        control_plane_tls(&anchor, None),
        "POST",
        "/v1/stats",
        Some(server_side.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = call(
        cp.api,
        as_orders.clone(),
        "POST",
        "/v1/stats",
        Some("{}".into()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let mut bad = report("client", "payments.shop", &[1_000]);
    bad = bad.replace("\"latency\":\"", "\"latency\":\"!!");
    let (status, body) = call(cp.api, as_orders.clone(), "POST", "/v1/stats", Some(bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // orders cannot speak for payments' inbound side; payments can.
    let (status, body) = call(
        cp.api,
        as_orders.clone(),
        "POST",
        "/v1/stats",
        Some(server_side.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        serde_json::from_str::<StatsAccepted>(&body)
            .unwrap()
            .accepted,
        0
    );
    let (status, body) = call(cp.api, as_payments, "POST", "/v1/stats", Some(server_side)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        serde_json::from_str::<StatsAccepted>(&body)
            .unwrap()
            .accepted,
        1
    );
    // A client-side series is the certificate's caller's, whatever it calls.
    let client_side = report("client", "search.web", &[500]);
    let (status, body) = call(cp.api, as_orders, "POST", "/v1/stats", Some(client_side)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (code, body) = cp.get_plain("/api/stats?window=5m").await;
    assert_eq!(code, 200, "{body}");
    let stats: MeshStats = serde_json::from_str(&body).unwrap();
    let edges: Vec<(&str, &str, Side, u64)> = stats
        .edges
        .iter()
        .map(|e| {
            (
                e.caller.as_str(),
                e.service.as_str(),
                e.side,
                e.golden.requests,
            )
        })
        .collect();
    assert_eq!(
        edges,
        [
            ("unauthenticated", "payments.shop", Side::Server, 3),
            ("shop/orders", "search.web", Side::Client, 1),
        ]
    );
    let (code, body) = cp.get_plain("/api/stats?window=1h").await;
    assert_eq!(code, 400, "{body}");
}
