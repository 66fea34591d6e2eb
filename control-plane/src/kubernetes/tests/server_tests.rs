//! `Server` in cluster mode against the recorded API server: the CA Secret made on
//! start, and `/ready` naming a refused watch and a missing CRD until they work.

use std::time::Duration;

use http::Method;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::mock_api::{Answer, MockApi};
use crate::{ClusterMode, ServeConfig, Server};

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: cp\r\nconnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn cluster_mode_is_not_ready_while_a_watch_is_refused_then_ready() {
    let mock = MockApi::from_fixtures(Some("refused"));
    mock.on(
        Method::GET,
        "/api/v1/namespaces/outrigger/secrets/outrigger-ca",
        vec![Answer::json(
            404,
            r#"{"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}"#,
        )],
    );
    mock.on(
        Method::POST,
        "/api/v1/namespaces/outrigger/secrets",
        vec![Answer::json(
            201,
            r#"{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "outrigger-ca"}}"#,
        )],
    );
    let tmp = tempfile::tempdir().unwrap();
    let mut config = ServeConfig::new(tmp.path().join("data"), tmp.path().join("no-policy-dir"));
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.http = "127.0.0.1:0".parse().unwrap();
    config.kubernetes = Some(ClusterMode {
        client: Some(mock.client()),
        namespace: "outrigger".into(),
        ca_secret: "outrigger-ca".into(),
        trust_domain: "cluster.local".into(),
        webhook: None,
        replica: "outrigger-control-plane-0".into(),
        service: "outrigger-control-plane".into(),
        status_lease: "outrigger-control-plane-status".into(),
    });
    let server = Server::bind(config)
        .await
        .expect("binds with a CA from the Secret");
    assert!(tmp.path().join("data/ca/issuer.key").exists());
    let http = server.http_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    let refused = loop {
        let response = get(http, "/ready").await;
        if response.contains("forbidden by RBAC") && response.contains("CRD installed") {
            break response;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    // The second answers are lists: once the backoff has passed, ready.
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let response = get(http, "/ready").await;
            if response.starts_with("HTTP/1.1 200") {
                return response;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("ready after the backoff");
    assert!(ready.ends_with("ready\n"), "{ready}");
    // What the status Lease's holder asks every replica for.
    let convergence = get(http, "/api/convergence").await;
    assert!(convergence.starts_with("HTTP/1.1 200"), "{convergence}");
    let body = convergence.split("\r\n\r\n").nth(1).unwrap();
    let report: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(report["replica"], "outrigger-control-plane-0");
    assert!(report["resources"].is_object(), "{report}");

    let _ = stop.send(());
    running.await.unwrap().unwrap();
}
