//! `GET /v1/watch`: authenticated, newline-delimited snapshots, ended by shutdown.

mod common;

use std::time::Duration;

use common::*;
use http::StatusCode;
use http_body_util::BodyExt as _;
use outrigger_api::Snapshot;

#[tokio::test]
async fn watch_requires_a_client_certificate() {
    let mesh = Mesh::new();
    let cp = ControlPlane::start(&mesh);
    let (status, text) = call(
        cp.api,
        tls_client(&mesh.anchor_pem(), None),
        "GET",
        "/v1/watch",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(text.contains("\"unauthenticated\""), "{text}");
}

#[tokio::test]
async fn watch_streams_the_snapshot_until_shutdown() {
    let mesh = Mesh::new();
    let mut cp = ControlPlane::start(&mesh);
    let anchor = mesh.anchor_pem();
    let workload = enroll(&cp, &anchor, &mesh.token("shop/orders"), &id("shop/orders")).await;

    let response = send(
        cp.api,
        tls_client(&anchor, Some(workload.certs)),
        "GET",
        "/v1/watch",
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let mut body = response.into_body();
    let mut buffered = Vec::new();
    while !buffered.contains(&b'\n') {
        let frame = body.frame().await.expect("a first line").expect("frame");
        buffered.extend_from_slice(frame.data_ref().expect("data"));
    }
    let end = buffered.iter().position(|b| *b == b'\n').unwrap();
    let snapshot: Snapshot = serde_json::from_slice(&buffered[..end]).expect("a Snapshot");
    assert!(snapshot.version > 0);
    assert_eq!(snapshot.trust_bundle, anchor);
    assert_eq!(snapshot.services.len(), 1);
    let payments = &snapshot.services[0];
    assert_eq!(
        (payments.namespace.as_str(), payments.name.as_str()),
        ("shop", "payments")
    );
    assert_eq!(
        payments.identity,
        "spiffe://cluster.local/ns/shop/sa/payments"
    );
    assert_eq!(payments.endpoints[0].address, "127.0.0.1:14143");

    let (_, metrics) = cp.get_plain("/metrics");
    assert!(
        metrics.contains("outrigger_control_plane_watchers 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "outrigger_control_plane_config_version {}\n",
            snapshot.version
        )),
        "{metrics}"
    );

    // SIGTERM ends the stream cleanly and the process exits 0.
    let status = tokio::task::spawn_blocking(move || {
        let status = cp.terminate();
        (status, cp.log())
    });
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(frame) = body.frame().await {
            if frame.is_err() {
                return false;
            }
        }
        true
    })
    .await
    .expect("the stream ends on shutdown");
    assert!(ended, "the stream ended cleanly, not with an error");
    let (status, log) = status.await.unwrap();
    assert!(status.success(), "{log}");
    assert!(log.contains("control plane stopped"), "{log}");
}
