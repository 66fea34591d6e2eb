//! The library as `outrigger demo` uses it: bind on port 0, run on a spawned task,
//! stop through the shutdown future.

use std::time::Duration;

use outrigger_control_plane::{ServeConfig, Server, ca_init, control_plane_identity};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[tokio::test]
async fn bind_run_and_stop_in_process() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let policy = tmp.path().join("policy");
    std::fs::create_dir(&policy).unwrap();
    ca_init::init(&data, "cluster.local").unwrap();

    let mut config = ServeConfig::new(&data, &policy);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.http = "127.0.0.1:0".parse().unwrap();
    let server = Server::bind(config).await.unwrap();
    assert_ne!(server.api_addr().port(), 0);
    assert_eq!(
        server.identity().unwrap(),
        control_plane_identity("cluster.local").unwrap()
    );
    let http = server.http_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // Spawnable: the run future is Send.
    let running = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    let mut ready = false;
    for _ in 0..100 {
        let mut tcp = tokio::net::TcpStream::connect(http).await.unwrap();
        tcp.write_all(b"GET /ready HTTP/1.1\r\nhost: cp\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        tcp.read_to_string(&mut response).await.unwrap();
        if response.starts_with("HTTP/1.1 200") {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ready, "/ready answers 200 once running");

    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(http).await.is_err(),
        "listener closed"
    );
}
