//! `GET /api/status` and `outrigger status`: which proxy runs which version, whether the
//! mesh has converged, and config errors; exit codes 0, 2 and 1.

use std::process::Output;

use http::StatusCode;
use outrigger_api::MeshStatus;
use outrigger_tests::{
    ControlPlane, Mesh, PAYMENTS_YAML, START_LIMIT, WatchStream, Workload, call, control_plane_tls,
    enroll, eventually, id, path, run, stderr, stdout, the_error_line, write_atomically,
};

async fn status_cli(cp: &ControlPlane) -> Output {
    let http = cp.http.to_string();
    tokio::task::spawn_blocking(move || run("outrigger", &["status", "--http", &http]))
        .await
        .unwrap()
}

async fn api_status(cp: &ControlPlane) -> MeshStatus {
    let (code, body) = cp.get_plain("/api/status").await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

async fn heartbeat(cp: &ControlPlane, anchor: &str, w: &Workload, body: String) {
    let tls = control_plane_tls(anchor, Some(w.certs.clone()));
    let (status, text) = call(cp.api, tls, "POST", "/v1/register", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
}

#[tokio::test]
async fn status_shows_proxies_versions_and_convergence() {
    let mesh = Mesh::with_payments();
    std::fs::write(
        mesh.policy_dir().join("orders.yaml"),
        PAYMENTS_YAML
            .replace("payments", "orders")
            .replace("14143", "14144"),
    )
    .unwrap();
    let cp = ControlPlane::start(&mesh).await;
    let anchor = mesh.anchor_pem();

    // No proxies: converged, trivially.
    let out = status_cli(&cp).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let version = api_status(&cp).await.version;
    assert_eq!(
        stdout(&out),
        format!("no proxies known\nconverged on version {version}\n")
    );

    // A connected proxy that has not reported a version: not converged.
    let orders = enroll(&cp, &anchor, &mesh.token("shop/orders"), &id("shop/orders")).await;
    let mut watch = WatchStream::open(&cp, &anchor, &orders, "/v1/watch?proxy=orders-1").await;
    assert_eq!(watch.next().await.version, version);
    let out = status_cli(&cp).await;
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.ends_with(&format!(
            "not converged: 1 of 1 proxies behind version {version}\n"
        )),
        "{text}"
    );
    let row = text
        .lines()
        .find(|l| l.starts_with("orders-1"))
        .expect(&text);
    assert!(
        row.contains("spiffe://cluster.local/ns/shop/sa/orders"),
        "{row}"
    );
    assert!(row.contains("shop/orders"), "{row}");
    assert!(row.contains("127.0.0.1:"), "{row}");

    // It reports the version: converged.
    heartbeat(
        &cp,
        &anchor,
        &orders,
        format!(r#"{{"proxy_id":"orders-1","applied_version":{version}}}"#),
    )
    .await;
    let out = status_cli(&cp).await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).ends_with(&format!("converged on version {version}\n")));

    // A registered instance: its address is shown; the new version is not applied yet.
    let payments = enroll(
        &cp,
        &anchor,
        &mesh.token("shop/payments"),
        &id("shop/payments"),
    )
    .await;
    let _payments_watch =
        WatchStream::open(&cp, &anchor, &payments, "/v1/watch?proxy=payments-1").await;
    heartbeat(
        &cp,
        &anchor,
        &payments,
        format!(
            r#"{{"proxy_id":"payments-1","applied_version":{version},"instance":{{"service":"payments","namespace":"shop","address":"127.0.0.1:24143","healthy":true}}}}"#
        ),
    )
    .await;
    let next = watch.next().await.version;
    assert_eq!(next, version + 1);
    let status = api_status(&cp).await;
    assert_eq!(status.version, next);
    assert!(!status.converged);
    let p = status
        .proxies
        .iter()
        .find(|p| p.proxy_id == "payments-1")
        .unwrap();
    assert_eq!(p.address, "127.0.0.1:24143");
    assert_eq!(p.service.as_deref(), Some("shop/payments"));
    assert!(p.connected);
    let out = status_cli(&cp).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stdout(&out).ends_with(&format!(
            "not converged: 2 of 2 proxies behind version {next}\n"
        )),
        "{}",
        stdout(&out)
    );

    // A disconnected proxy stays listed, and no longer counts.
    drop(watch);
    eventually("orders-1 to be disconnected", START_LIMIT, || async {
        api_status(&cp)
            .await
            .proxies
            .iter()
            .any(|p| p.proxy_id == "orders-1" && !p.connected)
    })
    .await;
    assert!(stdout(&status_cli(&cp).await).contains("(disconnected)"));
}

#[tokio::test]
async fn status_shows_config_errors() {
    let mesh = Mesh::with_payments();
    let cp = ControlPlane::start(&mesh).await;
    let file = mesh.policy_dir().join("shop.yaml");
    write_atomically(&file, &PAYMENTS_YAML.replace("127.0.0.1:14143", "nowhere"));
    eventually("the invalid edit to show", START_LIMIT, || async {
        !api_status(&cp).await.config_errors.is_empty()
    })
    .await;
    let errors = api_status(&cp).await.config_errors;
    assert_eq!(
        errors,
        [format!(
            "{}:7: spec.endpoints[0].address: invalid address \"nowhere\" (expected ip:port)",
            path(&file)
        )]
    );
    let out = status_cli(&cp).await;
    assert_eq!(out.status.code(), Some(0), "converged: no proxies");
    assert!(
        stdout(&out).contains(&format!("  {}\n", errors[0])),
        "{}",
        stdout(&out)
    );
}

#[test]
fn status_without_a_control_plane_is_one_error_line() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let out = run("outrigger", &["status", "--http", &addr]);
    let line = the_error_line(&out);
    assert!(
        line.starts_with(&format!(
            "error: cannot get the status from the control plane at {addr}: "
        )),
        "{line}"
    );
    assert!(out.stdout.is_empty());
}
