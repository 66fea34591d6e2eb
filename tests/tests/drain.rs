//! SIGTERM drains: the sidecar stops accepting at once, finishes the requests in flight,
//! then exits 0.

use std::time::Duration;

use outrigger_tests::{EchoApp, Mesh, START_LIMIT, eventually, free_port, get_h1, loopback};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_and_exits_zero() {
    let app = EchoApp::start("payments").await;
    let port = free_port();
    let mut mesh = Mesh::new();
    mesh.add_service("shop", "payments", "shop/payments", &[loopback(port)]);
    mesh.start_control_plane().await;
    let mut orders = mesh
        .sidecar("orders", "shop/orders", None, free_port())
        .await;
    let mut payments = mesh
        .sidecar("payments", "shop/payments", Some(app.addr), port)
        .await;

    // A request held by the app, in flight through both sidecars.
    let outbound = orders.outbound;
    let in_flight = tokio::spawn(async move { get_h1(outbound, "payments.shop", "/hold").await });
    app.wait_held(1).await;

    orders.process.terminate();
    payments.process.terminate();
    // Both stop accepting new connections...
    for addr in [orders.outbound, payments.inbound] {
        eventually("listener closed", START_LIMIT, || async move {
            tokio::net::TcpStream::connect(addr).await.is_err()
        })
        .await;
    }
    // ...but still run, holding the request.
    assert!(orders.process.running() && payments.process.running());

    app.release(1);
    let reply = in_flight
        .await
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["path"], "/hold");

    for sidecar in [&mut orders, &mut payments] {
        let status = sidecar
            .process
            .wait_exit(Duration::from_secs(30))
            .expect("exits after draining");
        assert!(status.success(), "exit status {status:?}");
    }
}
