//! An instance whose app dies while its sidecar lives: the caller's default policy saves
//! the request. A small answer the app breaks off in the middle never reaches the caller
//! as a truncated 200: the callee's sidecar holds its head until the body is whole
//! (`proxy/src/inbound/whole.rs`) and reports the break, and the caller retries it. An
//! app that cannot be reached is retried on another instance.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use outrigger_tests::{EchoApp, Mesh, free_port, get_h1, loopback};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An app that writes each answer's head and body in two writes (as Python's
/// `http.server` does), and breaks off its first answer after 10 of its 200 bytes.
struct SplitApp {
    addr: SocketAddr,
    requests: AtomicUsize,
}

impl SplitApp {
    async fn start() -> Arc<SplitApp> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app = Arc::new(SplitApp {
            addr: listener.local_addr().unwrap(),
            requests: AtomicUsize::new(0),
        });
        let serving = app.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(serving.clone().serve(tcp));
            }
        });
        app
    }

    async fn serve(self: Arc<Self>, mut tcp: TcpStream) {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            seen.clear();
            if self.requests.fetch_add(1, Ordering::SeqCst) == 0 {
                let _ = tcp
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 200\r\n\r\n0123456789")
                    .await;
                return; // dies in the middle of its answer
            }
            let head = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n";
            if tcp.write_all(head).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            if tcp.write_all(b"hello").await.is_err() {
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_answer_broken_off_by_the_app_is_retried_not_truncated() {
    let app = SplitApp::start().await;
    let port = free_port();
    let mut mesh = Mesh::new();
    mesh.add_service("shop", "payments", "shop/payments", &[loopback(port)]);
    mesh.start_control_plane().await;
    let _payments = mesh
        .sidecar("payments", "shop/payments", Some(app.addr), port)
        .await;
    let orders = mesh
        .sidecar("orders", "shop/orders", None, free_port())
        .await;

    let reply = get_h1(orders.outbound, "payments.shop", "/")
        .await
        .expect("a whole answer, not a truncated one");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "hello");
    assert_eq!(app.requests.load(Ordering::SeqCst), 2, "tried twice");
    let retries = orders
        .metric_sum("outrigger_retries_total", &[("service", "payments.shop")])
        .await;
    assert_eq!(retries, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_whose_app_is_gone_is_retried_on_another() {
    let app = EchoApp::start("payments").await;
    let (live, dead) = (free_port(), free_port());
    let mut mesh = Mesh::new();
    mesh.add_service(
        "shop",
        "payments",
        "shop/payments",
        &[loopback(live), loopback(dead)],
    );
    mesh.start_control_plane().await;
    let _live = mesh
        .sidecar("payments", "shop/payments", Some(app.addr), live)
        .await;
    // Its sidecar runs; its app does not (nothing listens there).
    let _dead = mesh
        .sidecar(
            "payments",
            "shop/payments",
            Some(loopback(free_port())),
            dead,
        )
        .await;
    let orders = mesh
        .sidecar("orders", "shop/orders", None, free_port())
        .await;
    for i in 0..20 {
        let reply = get_h1(orders.outbound, "payments.shop", &format!("/{i}"))
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "request {i}: {}", reply.body);
    }
    assert_eq!(app.requests(), 20);
}
