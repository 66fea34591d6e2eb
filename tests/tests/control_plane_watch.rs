//! `GET /v1/watch`: authenticated, newline-delimited events (the full state, then
//! deltas), ended by shutdown.

use std::time::Duration;

use http::StatusCode;
use http_body_util::BodyExt as _;
use outrigger_api::{MtlsMode, Snapshot, WatchEvent};
use outrigger_tests::{
    ControlPlane, DESIGN_EXAMPLE, Mesh, PAYMENTS_YAML, START_LIMIT, WatchStream, Workload, call,
    control_plane_tls, enroll, eventually, id, send, write_atomically,
};

#[tokio::test]
async fn watch_requires_a_client_certificate() {
    let mesh = Mesh::with_payments();
    let cp = ControlPlane::start(&mesh).await;
    let (status, text) = call(
        cp.api,
        control_plane_tls(&mesh.anchor_pem(), None),
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
    let mesh = Mesh::with_payments();
    let mut cp = ControlPlane::start(&mesh).await;
    let anchor = mesh.anchor_pem();
    let workload = enroll(&cp, &anchor, &mesh.token("shop/orders"), &id("shop/orders")).await;

    let response = send(
        cp.api,
        control_plane_tls(&anchor, Some(workload.certs)),
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
    let first: WatchEvent = serde_json::from_slice(&buffered[..end]).expect("a WatchEvent");
    let WatchEvent::Full(snapshot) = first else {
        panic!("the first line is the full state: {first:?}");
    };
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

    let (_, metrics) = cp.get_plain("/metrics").await;
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

/// The first line of a watch stream opened with `path`: the full state.
async fn first_snapshot(
    cp: &ControlPlane,
    anchor: &str,
    workload: &Workload,
    path: &str,
) -> Snapshot {
    let mut stream = WatchStream::open(cp, anchor, workload, path).await;
    match stream.next_event().await.0 {
        WatchEvent::Full(snapshot) => snapshot,
        other => panic!("the first line is the full state: {other:?}"),
    }
}

#[tokio::test]
async fn each_proxy_gets_its_own_server_policy_and_every_traffic_policy() {
    let mesh = Mesh::with_payments();
    std::fs::write(mesh.policy_dir().join("shop.yaml"), DESIGN_EXAMPLE).unwrap();
    std::fs::write(
        mesh.policy_dir().join("orders.yaml"),
        PAYMENTS_YAML
            .replace("payments", "orders")
            .replace("14143", "14144"),
    )
    .unwrap();
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

    // Found by identity: payments' sidecar gets payments' ServerPolicy.
    let snap = first_snapshot(&cp, &anchor, &payments, "/v1/watch?proxy=p1").await;
    let server = snap.server_policy.expect("payments' ServerPolicy");
    assert_eq!(server.mtls, MtlsMode::Strict);
    assert_eq!(server.rate_limit.unwrap().requests_per_second, 500);
    // Every service, each with its TrafficPolicy if it has one.
    let names: Vec<&str> = snap.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["orders", "payments"]);
    assert!(snap.services[0].traffic_policy.is_none());
    let traffic = snap.services[1]
        .traffic_policy
        .as_ref()
        .expect("TrafficPolicy");
    assert_eq!(traffic.retries.as_ref().unwrap().attempts, Some(2));

    // orders has no ServerPolicy: the proxy uses DESIGN.md's defaults.
    let snap = first_snapshot(&cp, &anchor, &orders, "/v1/watch").await;
    assert!(snap.server_policy.is_none());
    assert_eq!(snap.services.len(), 2);

    // The `service` parameter names the service explicitly.
    let snap = first_snapshot(
        &cp,
        &anchor,
        &payments,
        "/v1/watch?service=shop%2Fpayments&proxy=p2",
    )
    .await;
    assert!(snap.server_policy.is_some());

    // A malformed parameter is refused.
    let (status, text) = call(
        cp.api,
        control_plane_tls(&anchor, Some(payments.certs.clone())),
        "GET",
        "/v1/watch?service=payments",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("<namespace>/<name>"), "{text}");
}

/// `orders.yaml`: shop/orders with one static endpoint on `port` (5 digits, so that every
/// version of the file has the same length).
fn orders_yaml(port: u16) -> String {
    PAYMENTS_YAML
        .replace("payments", "orders")
        .replace("14143", &port.to_string())
}

fn unrelated_services(count: usize) -> String {
    (0..count)
        .map(|i| {
            format!(
                "apiVersion: outrigger.dev/v1alpha1\nkind: MeshService\nmetadata: {{name: s{i:03}, namespace: zoo}}\nspec:\n  identity: spiffe://cluster.local/ns/zoo/sa/s{i:03}\n  endpoints:\n    - address: 127.0.0.1:{}\n",
                20_000 + i
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

fn expect_delta(event: WatchEvent) -> outrigger_api::SnapshotDelta {
    match event {
        WatchEvent::Delta(delta) => delta,
        other => panic!("expected a delta: {other:?}"),
    }
}

#[tokio::test]
async fn after_the_full_state_each_edit_is_a_delta_whose_size_ignores_the_mesh() {
    let mesh = Mesh::with_payments();
    write_atomically(&mesh.policy_dir().join("orders.yaml"), &orders_yaml(14144));
    let cp = ControlPlane::start(&mesh).await;
    let anchor = mesh.anchor_pem();
    let orders = enroll(&cp, &anchor, &mesh.token("shop/orders"), &id("shop/orders")).await;
    let mut stream = WatchStream::open(&cp, &anchor, &orders, "/v1/watch?proxy=orders-1").await;
    let WatchEvent::Full(first) = stream.next_event().await.0 else {
        panic!("the first line is the full state");
    };
    assert_eq!(first.services.len(), 2);

    // One edit: a delta with exactly that service.
    write_atomically(&mesh.policy_dir().join("orders.yaml"), &orders_yaml(14145));
    let (event, small_edit) = stream.next_event().await;
    let delta = expect_delta(event);
    assert_eq!(
        (delta.base, delta.version),
        (first.version, first.version + 1)
    );
    assert_eq!(delta.upserted.len(), 1);
    assert_eq!(delta.upserted[0].name, "orders");
    assert_eq!(delta.upserted[0].endpoints[0].address, "127.0.0.1:14145");
    assert!(delta.removed.is_empty() && delta.trust_bundle.is_none());
    assert!(delta.server_policy.is_none());

    // A ServerPolicy for payments: nothing orders holds changed, so no line for it; the
    // next delta starts from the version orders was last sent.
    write_atomically(
        &mesh.policy_dir().join("payments-server.yaml"),
        "apiVersion: outrigger.dev/v1alpha1\nkind: ServerPolicy\nmetadata: {name: payments, namespace: shop}\nspec:\n  targetRef: {kind: MeshService, name: payments}\n  mtls: permissive\n",
    );
    eventually("the ServerPolicy to be served", START_LIMIT, || async {
        cp.get_plain("/metrics").await.1.contains(&format!(
            "outrigger_control_plane_config_version {}\n",
            first.version + 2
        ))
    })
    .await;

    // 200 unrelated services join the mesh: one delta with all of them.
    write_atomically(
        &mesh.policy_dir().join("zoo.yaml"),
        &unrelated_services(200),
    );
    let delta = expect_delta(stream.next_event().await.0);
    assert_eq!(
        (delta.base, delta.version),
        (first.version + 1, first.version + 3)
    );
    assert_eq!(delta.upserted.len(), 200);
    assert!(
        delta.server_policy.is_none(),
        "payments' policy is not orders'"
    );

    // The same edit again, in a mesh of 202 services: a line of the same size.
    write_atomically(&mesh.policy_dir().join("orders.yaml"), &orders_yaml(14146));
    let (event, same_edit) = stream.next_event().await;
    let delta = expect_delta(event);
    assert_eq!(delta.upserted.len(), 1);
    assert_eq!(delta.upserted[0].endpoints[0].address, "127.0.0.1:14146");
    assert_eq!(
        same_edit, small_edit,
        "the bytes of an edit do not depend on the number of services"
    );
    assert_eq!(stream.held().services.len(), 202);
}
