//! WebSocket across the mesh: a real WebSocket client calls the caller sidecar's
//! outbound port with `Host: echo.shop`, and a real WebSocket echo server behind the
//! callee's sidecar answers. The sidecars carry the upgrade as an HTTP/2 extended
//! CONNECT over mTLS (docs/websocket.md); the callee's ServerPolicy decides who may.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use outrigger_tests::{Mesh, START_LIMIT, Sidecar, free_port, loopback};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::{Error, Message};

const ORDERS: &str = "spiffe://cluster.local/ns/shop/sa/orders";

const SERVER_POLICY: &str = "apiVersion: outrigger.dev/v1alpha1
kind: ServerPolicy
metadata: {name: echo, namespace: shop}
spec:
  targetRef: {kind: MeshService, name: echo}
  authorization:
    default: deny
    rules:
      - from: [\"spiffe://cluster.local/ns/shop/sa/orders\"]
        match: {methods: [GET], pathPrefix: /chat}
";

/// A WebSocket echo server; it notes the `outrigger-client-id` of each handshake.
// The handshake callback's error type is tungstenite's (a whole HTTP response).
#[allow(clippy::result_large_err)]
async fn ws_echo() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let noted = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let noted = noted.clone();
            tokio::spawn(async move {
                let note = |req: &Request, response: Response| {
                    let id = req
                        .headers()
                        .get("outrigger-client-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("none");
                    noted.lock().expect("lock").push(id.to_string());
                    Ok(response)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, note).await else {
                    return;
                };
                // Text and binary come back as they went; tungstenite answers a close.
                while let Some(Ok(message)) = ws.next().await {
                    if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

struct Echo {
    _mesh: Mesh,
    orders: Sidecar,
    evil: Sidecar,
    _echo: Sidecar,
    seen: Arc<Mutex<Vec<String>>>,
}

async fn echo() -> Echo {
    let (app, seen) = ws_echo().await;
    let port = free_port();
    let mut mesh = Mesh::new();
    mesh.add_service("shop", "echo", "shop/echo", &[loopback(port)]);
    mesh.write_policy("server-policy.yaml", SERVER_POLICY);
    mesh.start_control_plane().await;
    let echo = mesh.sidecar("echo", "shop/echo", Some(app), port).await;
    let orders = mesh
        .sidecar("orders", "shop/orders", None, free_port())
        .await;
    let evil = mesh.sidecar("evil", "shop/evil", None, free_port()).await;
    Echo {
        _mesh: mesh,
        orders,
        evil,
        _echo: echo,
        seen,
    }
}

/// A WebSocket handshake with the sidecar's outbound port, for `ws://echo.shop{path}`.
async fn connect(
    sidecar: &Sidecar,
    path: &str,
) -> Result<tokio_tungstenite::WebSocketStream<TcpStream>, Error> {
    let tcp = TcpStream::connect(sidecar.outbound)
        .await
        .expect("connect to the outbound port");
    let handshake = tokio_tungstenite::client_async(format!("ws://echo.shop{path}"), tcp);
    let (ws, response) = tokio::time::timeout(START_LIMIT, handshake)
        .await
        .expect("an answer to the handshake, not a hang")?;
    assert_eq!(response.status(), 101);
    Ok(ws)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_binary_and_close_cross_both_sidecars() {
    let echo = echo().await;
    let mut ws = connect(&echo.orders, "/chat?room=1")
        .await
        .expect("the handshake succeeds");
    assert_eq!(
        *echo.seen.lock().expect("lock"),
        [ORDERS],
        "the app saw who called"
    );

    ws.send(Message::text("hello, mesh"))
        .await
        .expect("send text");
    let back = ws.next().await.expect("an answer").expect("a message");
    assert_eq!(back, Message::text("hello, mesh"));

    // Larger than one frame of the HTTP/2 stream beneath it.
    let blob: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    ws.send(Message::binary(blob.clone()))
        .await
        .expect("send binary");
    let back = ws.next().await.expect("an answer").expect("a message");
    assert_eq!(back, Message::binary(blob));

    // The close handshake: ours goes out, the server's comes back, then the stream ends.
    ws.close(None).await.expect("close");
    let mut closed = false;
    while let Some(message) = tokio::time::timeout(START_LIMIT, ws.next())
        .await
        .expect("the close is answered, not left hanging")
    {
        match message {
            Ok(Message::Close(_)) => closed = true,
            Ok(other) => panic!("unexpected after close: {other:?}"),
            Err(Error::ConnectionClosed) => break,
            Err(error) => panic!("the close handshake failed: {error}"),
        }
    }
    assert!(closed, "the server's close frame came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_the_server_policy_refuses_gets_403() {
    let echo = echo().await;
    for (caller, path) in [(&echo.evil, "/chat"), (&echo.orders, "/admin")] {
        match connect(caller, path).await {
            Err(Error::Http(response)) => assert_eq!(response.status(), 403, "{path}"),
            Ok(_) => panic!("{path}: the upgrade went through"),
            Err(error) => panic!("{path}: {error}"),
        }
    }
    assert!(
        echo.seen.lock().expect("lock").is_empty(),
        "no refused handshake reached the app"
    );
}
