//! What both HTTP listeners refuse from a client, each case on raw sockets (HTTP/1) or raw
//! HTTP/2 frames and the `h2` crate's client: the refusal itself (status, close or
//! GOAWAY), its count in `outrigger_http_refusals_total`, and ordinary traffic still
//! served afterwards (docs/security.md).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use outrigger_tests::{EchoApp, Mesh, Sidecar, free_port, get_h1, loopback};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for the proxy to answer or close; generous, never asserted.
const PATIENCE: Duration = Duration::from_secs(30);

/// `payments` (permissive mTLS, so its inbound port takes plaintext too) and an `orders`
/// sidecar whose outbound port the app-side cases use, with `env` for its limits.
struct Setup {
    _mesh: Mesh,
    _app: Arc<EchoApp>,
    payments: Sidecar,
    orders: Sidecar,
}

async fn setup(env: &[(&str, &str)]) -> Setup {
    let app = EchoApp::start("payments").await;
    let port = free_port();
    let mut mesh = Mesh::new();
    mesh.add_service("shop", "payments", "shop/payments", &[loopback(port)]);
    mesh.server_policy(
        "shop",
        "payments",
        "  mtls: permissive\n  authorization:\n    default: allow\n",
    );
    mesh.start_control_plane().await;
    let payments = mesh
        .sidecar("payments", "shop/payments", Some(app.addr), port)
        .await;
    let orders = mesh.spawn_sidecar("orders", "shop/orders", None, free_port(), env);
    orders.wait_ready().await;
    Setup {
        _mesh: mesh,
        _app: app,
        payments,
        orders,
    }
}

/// Writes `request`, then reads until the proxy closes: what it answered, and whether it
/// closed (`false`: still open after [`PATIENCE`]).
async fn exchange(addr: SocketAddr, request: &[u8]) -> (String, bool) {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(request).await.expect("write");
    let (seen, closed) = read_to_close(&mut tcp).await;
    (String::from_utf8_lossy(&seen).into_owned(), closed)
}

async fn read_to_close(tcp: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let closed = loop {
        match tokio::time::timeout(PATIENCE, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    (seen, closed)
}

async fn refusals(sidecar: &Sidecar, direction: &str, reason: &str) -> f64 {
    sidecar
        .metric_sum(
            "outrigger_http_refusals_total",
            &[("direction", direction), ("reason", reason)],
        )
        .await
}

async fn still_serves(orders: &Sidecar) {
    let reply = get_h1(orders.outbound, "payments.shop", "/after")
        .await
        .expect("ordinary traffic after the refusal");
    assert_eq!(reply.status, 200, "{}", reply.body);
}

/// The request RFC 9112 §6.3 calls a smuggling attempt, with a second one behind it.
const BOTH_LENGTHS: &[u8] = b"POST / HTTP/1.1\r\nHost: payments.shop\r\nContent-Length: 4\r\n\
    Transfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n\
    GET /smuggled HTTP/1.1\r\nHost: payments.shop\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_is_refused_and_closed_on_both_listeners() {
    let setup = setup(&[]).await;
    for (sidecar, direction) in [(&setup.orders, "outbound"), (&setup.payments, "inbound")] {
        let addr = match direction {
            "outbound" => sidecar.outbound,
            _ => sidecar.inbound,
        };
        let (answer, closed) = exchange(addr, BOTH_LENGTHS).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{direction}: {answer}");
        assert!(answer.contains("\"bad-request\""), "{direction}: {answer}");
        assert_eq!(
            answer.matches("HTTP/1.1").count(),
            1,
            "{direction}: the request behind it must not be answered: {answer}"
        );
        assert!(closed, "{direction}: the connection must be closed");
        assert_eq!(
            refusals(sidecar, direction, "content-length-with-transfer-encoding").await,
            1.0
        );
    }
    assert_eq!(setup._app.requests(), 0, "nothing reached the app");
    still_serves(&setup.orders).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_targets_and_oversized_heads_are_refused() {
    let setup = setup(&[]).await;
    let outbound = setup.orders.outbound;

    let two_hosts = b"GET / HTTP/1.1\r\nHost: payments.shop\r\nHost: evil.example\r\n\r\n";
    let (answer, closed) = exchange(outbound, two_hosts).await;
    assert!(answer.starts_with("HTTP/1.1 400") && closed, "{answer}");
    assert_eq!(
        refusals(&setup.orders, "outbound", "duplicate-host").await,
        1.0
    );

    let star = b"GET * HTTP/1.1\r\nHost: payments.shop\r\n\r\n";
    let (answer, closed) = exchange(outbound, star).await;
    assert!(answer.starts_with("HTTP/1.1 400") && closed, "{answer}");
    let connect = b"CONNECT payments.shop:80 HTTP/1.1\r\nHost: payments.shop:80\r\n\r\n";
    let (answer, _) = exchange(outbound, connect).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(
        refusals(&setup.orders, "outbound", "bad-request-target").await,
        2.0
    );

    // 70 KiB of headers, over the 64 KiB default: 431 from hyper, counted by the proxy.
    let mut big = b"GET / HTTP/1.1\r\nHost: payments.shop\r\n".to_vec();
    for i in 0..70 {
        big.extend_from_slice(format!("x-filler-{i}: {}\r\n", "a".repeat(1000)).as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    let (answer, closed) = exchange(outbound, &big).await;
    assert!(answer.starts_with("HTTP/1.1 431") && closed, "{answer}");
    // More than 100 header fields: 431 as well.
    let mut many = b"GET / HTTP/1.1\r\nHost: payments.shop\r\n".to_vec();
    for i in 0..120 {
        many.extend_from_slice(format!("x-h{i}: 1\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let (answer, _) = exchange(outbound, &many).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert_eq!(
        refusals(&setup.orders, "outbound", "headers-too-large").await,
        2.0
    );

    // Not HTTP at all: hyper's own 400, counted.
    let (answer, _) = exchange(outbound, b"GET / HTTP/1.1\r\nHost payments\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(
        refusals(&setup.orders, "outbound", "malformed-request").await,
        1.0
    );
    still_serves(&setup.orders).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_head_is_cut_off_and_connections_over_the_cap_are_closed() {
    let setup = setup(&[
        ("OUTRIGGER_HEADER_READ_TIMEOUT", "1s"),
        ("OUTRIGGER_MAX_CONNECTIONS", "2"),
    ])
    .await;
    let outbound = setup.orders.outbound;

    // Slowloris: half a head, then nothing. The proxy closes without an answer.
    let (answer, closed) = exchange(outbound, b"GET / HTTP/1.1\r\nHost: paym").await;
    assert!(closed, "a slow head must be cut off");
    assert!(!answer.contains("200"), "{answer}");
    assert_eq!(
        refusals(&setup.orders, "outbound", "header-read-timeout").await,
        1.0
    );

    // Two connections held open, each having been served; a third is closed at once.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut tcp = TcpStream::connect(outbound).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: payments.shop\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(tcp);
    }
    let (answer, closed) =
        exchange(outbound, b"GET / HTTP/1.1\r\nHost: payments.shop\r\n\r\n").await;
    assert!(closed && answer.is_empty(), "over the cap: {answer}");
    assert_eq!(
        refusals(&setup.orders, "outbound", "connection-limit").await,
        1.0
    );
    held.pop();
    // The slot is given back when the connection ends; the proxy sees the close soon.
    outrigger_tests::eventually("a slot is free again", PATIENCE, || async {
        get_h1(outbound, "payments.shop", "/").await.is_ok()
    })
    .await;
}

/// A client that opens streams to a slow app and cancels each at once (CVE-2023-44487):
/// the connection is shut down (by our rapid-reset guard, or by h2's own limit on resets
/// of streams not yet accepted, whichever sees it first), and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_reset_closes_the_connection() {
    let setup = setup(&[("OUTRIGGER_MAX_PREMATURE_RESETS", "50")]).await;
    setup._app.set_delay(Duration::from_secs(5));
    let tcp = TcpStream::connect(setup.orders.outbound).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let connection = tokio::spawn(connection);
    let mut sent = 0;
    for _ in 0..2_000 {
        let ready = match client.ready().await {
            Ok(ready) => ready,
            Err(_) => break,
        };
        client = ready;
        let request = http::Request::get("http://payments.shop/slow")
            .body(())
            .unwrap();
        let Ok((_response, mut stream)) = client.send_request(request, true) else {
            break;
        };
        // Give the proxy a moment to start the request, so that the cancel is "premature"
        // rather than a reset of a stream not yet accepted (both are refused).
        tokio::task::yield_now().await;
        stream.send_reset(h2::Reason::CANCEL);
        sent += 1;
    }
    // The client keeps the connection (its handle lives on): only the proxy can end it.
    // How many resets the client got out first depends on when its connection task saw
    // the GOAWAY, so it is printed, not asserted.
    let ended = tokio::time::timeout(PATIENCE, connection)
        .await
        .expect("the proxy must end the connection");
    eprintln!("rapid reset: the connection ended with {ended:?}");
    let counted = refusals(&setup.orders, "outbound", "rapid-reset").await
        + refusals(&setup.orders, "outbound", "http2-abuse").await;
    eprintln!(
        "rapid reset: stopped after {sent} resets; rapid-reset {}, http2-abuse {}",
        refusals(&setup.orders, "outbound", "rapid-reset").await,
        refusals(&setup.orders, "outbound", "http2-abuse").await
    );
    assert_eq!(counted, 1.0, "after {sent} resets");
    setup._app.set_delay(Duration::ZERO);
    still_serves(&setup.orders).await;
}

/// The same, one stream at a time, each cancelled only once the app has it: only the
/// proxy's own guard can see this one (h2's limit is for streams not yet accepted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_streams_the_app_already_has_trips_the_rapid_reset_guard() {
    let setup = setup(&[("OUTRIGGER_MAX_PREMATURE_RESETS", "20")]).await;
    let app = setup._app.clone();
    app.set_delay(Duration::from_secs(30));
    let tcp = TcpStream::connect(setup.orders.outbound).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let connection = tokio::spawn(connection);
    let mut cancelled = 0;
    while cancelled < 100 {
        let Ok(ready) = client.ready().await else {
            break;
        };
        client = ready;
        let request = http::Request::get("http://payments.shop/slow")
            .body(())
            .unwrap();
        let Ok((_response, mut stream)) = client.send_request(request, true) else {
            break;
        };
        let reached = app.requests();
        outrigger_tests::eventually("the app has the request", PATIENCE, || async {
            app.requests() > reached
        })
        .await;
        stream.send_reset(h2::Reason::CANCEL);
        cancelled += 1;
    }
    tokio::time::timeout(PATIENCE, connection)
        .await
        .expect("the proxy must end the connection")
        .ok();
    assert!(
        cancelled < 100,
        "the proxy let {cancelled} streams be cancelled"
    );
    assert_eq!(
        refusals(&setup.orders, "outbound", "rapid-reset").await,
        1.0
    );
    app.set_delay(Duration::ZERO);
    still_serves(&setup.orders).await;
}

/// HTTP/2 frame: length, type, flags, stream, payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK literal header without indexing, new name (names and values under 127 bytes).
fn literal(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x00, name.len() as u8];
    out.extend_from_slice(name);
    out.push(value.len() as u8);
    out.extend_from_slice(value);
    out
}

/// A HEADERS frame that never ends, followed by CONTINUATION frames without end: the
/// proxy must stop it with GOAWAY long before the client runs out of frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_continuation_flood_gets_goaway() {
    const HEADERS: u8 = 0x1;
    const SETTINGS: u8 = 0x4;
    const GOAWAY: u8 = 0x7;
    const CONTINUATION: u8 = 0x9;
    let setup = setup(&[]).await;
    let mut tcp = TcpStream::connect(setup.orders.outbound).await.unwrap();
    let mut opening = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    opening.extend(frame(SETTINGS, 0, 0, &[]));
    // :method GET, :scheme http, :path / (static table), :authority payments.shop.
    let mut block = vec![0x82, 0x86, 0x84];
    block.extend(literal(b":authority", b"payments.shop"));
    // END_STREAM (0x1), and never END_HEADERS (0x4).
    opening.extend(frame(HEADERS, 0x1, 1, &block));
    tcp.write_all(&opening).await.unwrap();
    let mut fragment = Vec::new();
    while fragment.len() < 16_000 {
        fragment.extend(literal(b"x-flood", &[b'a'; 100]));
    }
    let continuation = frame(CONTINUATION, 0, 1, &fragment);
    let mut sent = 0usize;
    for _ in 0..2_000 {
        if tcp.write_all(&continuation).await.is_err() {
            break;
        }
        sent += 1;
    }
    let (bytes, closed) = read_to_close(&mut tcp).await;
    assert!(closed, "the proxy must close the connection");
    assert!(sent < 2_000, "the proxy read 32 MB of one header block");
    // The proxy's frames after its SETTINGS: a GOAWAY is among them.
    let mut at = 0;
    let mut goaway = false;
    while at + 9 <= bytes.len() {
        let len = usize::from(bytes[at]) << 16
            | usize::from(bytes[at + 1]) << 8
            | usize::from(bytes[at + 2]);
        goaway |= bytes[at + 3] == GOAWAY;
        at += 9 + len;
    }
    assert!(goaway, "a GOAWAY must say why ({} bytes read)", bytes.len());
    eprintln!("continuation flood: stopped after {sent} frames of 16 KB");
    let counted = refusals(&setup.orders, "outbound", "http2-abuse").await
        + refusals(&setup.orders, "outbound", "http2-protocol-error").await;
    assert_eq!(counted, 1.0);
    still_serves(&setup.orders).await;
}
