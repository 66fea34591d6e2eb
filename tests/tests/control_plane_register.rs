//! `POST /v1/register`: registered instances join their service's endpoints in every
//! watcher's snapshots, leave when unhealthy or silent, and only for their own service.

use http::StatusCode;
use outrigger_api::{Heartbeat, HeartbeatResponse, Instance, Snapshot};
use outrigger_tests::{
    ControlPlane, Mesh, START_LIMIT, WatchStream, Workload, call, control_plane_tls, enroll,
    eventually, id,
};

fn beat(proxy: &str, address: &str, healthy: bool) -> String {
    serde_json::to_string(&Heartbeat {
        proxy_id: proxy.into(),
        applied_version: 0,
        instance: Some(Instance {
            service: "payments".into(),
            namespace: "shop".into(),
            address: address.into(),
            healthy,
        }),
    })
    .unwrap()
}

async fn register(
    cp: &ControlPlane,
    anchor: &str,
    workload: Option<&Workload>,
    body: String,
) -> (StatusCode, String) {
    let tls = control_plane_tls(anchor, workload.map(|w| w.certs.clone()));
    call(cp.api, tls, "POST", "/v1/register", Some(body)).await
}

fn endpoints(snap: &Snapshot) -> Vec<&str> {
    snap.services
        .iter()
        .find(|s| s.name == "payments")
        .unwrap()
        .endpoints
        .iter()
        .map(|e| e.address.as_str())
        .collect()
}

#[tokio::test]
async fn registered_instances_come_and_go_with_their_health() {
    let mesh = Mesh::with_payments();
    let cp = ControlPlane::start(&mesh).await;
    let anchor = mesh.anchor_pem();
    let payments = enroll(
        &cp,
        &anchor,
        &mesh.token("shop/payments"),
        &id("shop/payments"),
    )
    .await;
    let orders = enroll(&cp, &anchor, &mesh.token("shop/orders"), &id("shop/orders")).await;
    let mut watch = WatchStream::open(&cp, &anchor, &orders, "/v1/watch?proxy=orders-1").await;
    let first = watch.next().await;
    assert_eq!(endpoints(&first), ["127.0.0.1:14143"]);

    let (status, text) = register(
        &cp,
        &anchor,
        Some(&payments),
        beat("pay-1", "127.0.0.1:24143", true),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let response: HeartbeatResponse = serde_json::from_str(&text).unwrap();
    assert_eq!(response.expires_in_ms, 10_000);
    let second = watch.next().await;
    assert_eq!(second.version, first.version + 1);
    assert_eq!(endpoints(&second), ["127.0.0.1:14143", "127.0.0.1:24143"]);

    // Unhealthy: removed; healthy again: back.
    let (status, _) = register(
        &cp,
        &anchor,
        Some(&payments),
        beat("pay-1", "127.0.0.1:24143", false),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let third = watch.next().await;
    assert_eq!(endpoints(&third), ["127.0.0.1:14143"]);
    register(
        &cp,
        &anchor,
        Some(&payments),
        beat("pay-1", "127.0.0.1:24143", true),
    )
    .await;
    let fourth = watch.next().await;
    assert_eq!(endpoints(&fourth), ["127.0.0.1:14143", "127.0.0.1:24143"]);
    assert_eq!(fourth.version, first.version + 3);
    let metrics = cp.get_plain("/metrics").await.1;
    assert!(
        metrics.contains("outrigger_control_plane_registered_instances 1\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn silent_instances_expire() {
    let mesh = Mesh::with_payments();
    let cp = ControlPlane::start_with(&mesh, &["--registration-ttl", "300ms"]).await;
    let anchor = mesh.anchor_pem();
    let payments = enroll(
        &cp,
        &anchor,
        &mesh.token("shop/payments"),
        &id("shop/payments"),
    )
    .await;
    let mut watch = WatchStream::open(&cp, &anchor, &payments, "/v1/watch").await;
    let first = watch.next().await;
    let (status, text) = register(
        &cp,
        &anchor,
        Some(&payments),
        beat("pay-1", "127.0.0.1:24143", true),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("\"expires_in_ms\":300"), "{text}");
    assert_eq!(endpoints(&watch.next().await).len(), 2);
    // No more heartbeats: it leaves.
    let expired = watch.next().await;
    assert_eq!(endpoints(&expired), ["127.0.0.1:14143"]);
    assert_eq!(expired.version, first.version + 2);
    assert!(cp.log().contains("registration expired"), "{}", cp.log());
}

#[tokio::test]
async fn refusals() {
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

    // Another identity's service: 403, with the reason, logged.
    let (status, text) = register(
        &cp,
        &anchor,
        Some(&orders),
        beat("o-1", "127.0.0.1:24143", true),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    assert!(text.contains("\"forbidden\""), "{text}");
    assert!(
        text.contains("MeshService shop/payments has identity spiffe://cluster.local/ns/shop/sa/payments, not the caller's spiffe://cluster.local/ns/shop/sa/orders"),
        "{text}"
    );
    eventually("the refusal to be logged", START_LIMIT, || async {
        cp.log().contains("refused registration")
    })
    .await;

    // No client certificate: 401.
    let (status, text) = register(&cp, &anchor, None, beat("x", "127.0.0.1:24143", true)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");

    // Not a socket address: 400. Not a heartbeat: 400.
    let (status, text) = register(
        &cp,
        &anchor,
        Some(&payments),
        beat("p-1", "payments:4143", true),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("not a socket address"), "{text}");
    let (status, _) = register(&cp, &anchor, Some(&payments), "{\"proxy\":1}".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A heartbeat with no instance is fine (a proxy with no app to register).
    let body = r#"{"proxy_id":"o-1","applied_version":3}"#.to_string();
    let (status, text) = register(&cp, &anchor, Some(&orders), body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
}
