//! A certificate that is valid but revoked (`outrigger revoke`, the real CLI, against the
//! real control plane): from the moment the list changes, everything the identity holds
//! from before is refused with 403 `revoked` and the reason, its watch streams are cut,
//! its instances leave the endpoints; other workloads carry on, and a token created
//! afterwards lets it back in. docs/control-plane-limits.md says why revocation is this.

use http::StatusCode;
use outrigger_api::{Heartbeat, Instance, Snapshot};
use outrigger_tests::{
    ControlPlane, Mesh, START_LIMIT, WatchStream, Workload, call, control_plane_tls, enroll,
    eventually, id, path, request_certificate, run, stderr, stdout,
};

fn beat(proxy: &str, address: &str) -> String {
    serde_json::to_string(&Heartbeat {
        proxy_id: proxy.into(),
        applied_version: 0,
        instance: Some(Instance {
            service: "payments".into(),
            namespace: "shop".into(),
            address: address.into(),
            healthy: true,
        }),
    })
    .unwrap()
}

fn payments_endpoints(state: &Snapshot) -> Vec<String> {
    state
        .services
        .iter()
        .find(|s| s.name == "payments")
        .unwrap()
        .endpoints
        .iter()
        .map(|e| e.address.clone())
        .collect()
}

fn csr() -> String {
    outrigger_certs::WorkloadKey::generate()
        .unwrap()
        .csr_pem_without_identity()
        .unwrap()
}

#[tokio::test]
async fn a_revoked_identity_is_refused_everywhere_and_its_watches_are_cut() {
    let mesh = Mesh::with_payments();
    let cp = ControlPlane::start_with(&mesh, &["--registration-warmup", "0s"]).await;
    let anchor = mesh.anchor_pem();
    let spare_token = mesh.token("shop/payments");
    let payments = enroll(
        &cp,
        &anchor,
        &mesh.token("shop/payments"),
        &id("shop/payments"),
    )
    .await;
    let orders = enroll(&cp, &anchor, &mesh.token("shop/orders"), &id("shop/orders")).await;
    let as_payments =
        |workload: &Workload| control_plane_tls(&anchor, Some(workload.certs.clone()));

    let (status, text) = call(
        cp.api,
        as_payments(&payments),
        "POST",
        "/v1/register",
        Some(beat("pay-1", "127.0.0.1:24143")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let mut orders_watch = WatchStream::open(&cp, &anchor, &orders, "/v1/watch?proxy=o-1").await;
    while payments_endpoints(&orders_watch.next().await).len() < 2 {}
    let mut payments_watch =
        WatchStream::open(&cp, &anchor, &payments, "/v1/watch?proxy=pay-1").await;
    payments_watch.next().await;

    let out = run(
        "outrigger",
        &[
            "revoke",
            "--data-dir",
            path(&mesh.data_dir()),
            "--identity",
            "shop/payments",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("revoked spiffe://cluster.local/ns/shop/sa/payments"),
        "{}",
        stdout(&out)
    );

    // Its open watch is cut; its instance leaves the endpoints the others see.
    assert!(payments_watch.ends_within(START_LIMIT).await, "cut");
    while payments_endpoints(&orders_watch.next().await) != ["127.0.0.1:14143"] {}
    assert!(
        cp.log()
            .contains("watcher cut off: its identity was revoked"),
        "{}",
        cp.log()
    );

    // Its certificate is refused everywhere, with the reason.
    let (status, json) = request_certificate(cp.api, as_payments(&payments), &csr(), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{json}");
    assert_eq!(json["error"], "revoked");
    let message = json["message"].as_str().unwrap();
    assert!(
        message.contains("spiffe://cluster.local/ns/shop/sa/payments was revoked at")
            && message.contains("this certificate was issued at"),
        "{message}"
    );
    for (method, endpoint, body) in [
        ("GET", "/v1/watch", None),
        (
            "POST",
            "/v1/register",
            Some(beat("pay-1", "127.0.0.1:24143")),
        ),
        ("POST", "/v1/stats", Some("{}".to_string())),
    ] {
        let (status, text) = call(cp.api, as_payments(&payments), method, endpoint, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{endpoint}: {text}");
        assert!(text.contains("\"revoked\""), "{endpoint}: {text}");
    }
    // And so is a token made before the revocation.
    let (status, json) = request_certificate(
        cp.api,
        control_plane_tls(&anchor, None),
        &csr(),
        Some(&spare_token),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{json}");
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("this bootstrap token was issued at"),
        "{json}"
    );

    assert_eq!(
        cp.metric("outrigger_control_plane_watchers_cut_total{reason=\"revoked\"}")
            .await,
        1.0
    );
    assert_eq!(
        cp.metric("outrigger_control_plane_revoked_identities")
            .await,
        1.0
    );
    assert_eq!(
        cp.metric("outrigger_control_plane_certificate_requests_refused_total{reason=\"revoked\"}")
            .await,
        2.0
    );
    for endpoint in ["watch", "register", "stats"] {
        let sample = format!(
            "outrigger_control_plane_api_requests_refused_total{{endpoint=\"{endpoint}\",reason=\"revoked\"}}"
        );
        assert_eq!(cp.metric(&sample).await, 1.0, "{sample}");
    }

    // The others carry on: orders still watches and renews.
    let (status, json) = request_certificate(
        cp.api,
        control_plane_tls(&anchor, Some(orders.certs.clone())),
        &csr(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");

    // A token made after the revocation (from the next second on) lets payments back in.
    let revoked_at: i64 = std::fs::read_to_string(mesh.data_dir().join("ca").join("revoked"))
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("spiffe://cluster.local/ns/shop/sa/payments "))
        .and_then(|at| at.trim().parse().ok())
        .expect("the revocation's time");
    eventually("the clock past the revocation", START_LIMIT, || async {
        outrigger_certs::unix_now() > revoked_at
    })
    .await;
    let back = enroll(
        &cp,
        &anchor,
        &mesh.token("shop/payments"),
        &id("shop/payments"),
    )
    .await;
    let mut watch = WatchStream::open(&cp, &anchor, &back, "/v1/watch?proxy=pay-2").await;
    watch.next().await;
}

#[tokio::test]
async fn a_revocation_file_that_does_not_parse_keeps_the_last_list() {
    let mesh = Mesh::with_payments();
    let cp = ControlPlane::start(&mesh).await;
    let anchor = mesh.anchor_pem();
    let orders = enroll(&cp, &anchor, &mesh.token("shop/orders"), &id("shop/orders")).await;
    outrigger_tests::write_atomically(
        &mesh.data_dir().join("ca").join("revoked"),
        "spiffe://cluster.local/ns/shop/sa/orders yesterday\n",
    );
    eventually("the bad file to be reported", START_LIMIT, || async {
        cp.log().contains("cannot read the revoked identities")
    })
    .await;
    assert!(cp.log().contains("line 1: not a Unix time"), "{}", cp.log());
    let mut watch = WatchStream::open(&cp, &anchor, &orders, "/v1/watch").await;
    watch.next().await;
}
