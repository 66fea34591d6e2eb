//! The pool against real HTTP/1.1 servers on loopback, counting the connections they
//! accept.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::channel::Channel;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;

type Pool = Http1Pool<Empty<Bytes>>;

fn pool(addr: SocketAddr) -> Pool {
    Http1Pool::new(addr, Duration::from_secs(5))
}

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::builder()
        .uri(path)
        .header(http::header::HOST, "app")
        .body(Empty::new())
        .expect("a valid request")
}

/// A hyper HTTP/1.1 server answering "ok"; `/stream` answers a body that ends only when
/// the test sends on the returned channel. Counts the connections it accepts.
async fn server() -> (SocketAddr, Arc<AtomicUsize>, mpsc::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let (finish, finished) = mpsc::channel::<()>(1);
    let finished = Arc::new(tokio::sync::Mutex::new(finished));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let finished = finished.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let finished = finished.clone();
                    async move {
                        let body = if req.uri().path() == "/stream" {
                            let (mut tx, body) = Channel::<Bytes, Infallible>::new(1);
                            tokio::spawn(async move {
                                let _ = tx.send_data(Bytes::from("first ")).await;
                                finished.lock().await.recv().await;
                                let _ = tx.send_data(Bytes::from("last")).await;
                            });
                            http_body_util::Either::Left(body)
                        } else {
                            http_body_util::Either::Right(Full::new(Bytes::from("ok")))
                        };
                        Ok::<_, Infallible>(Response::new(body))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, accepted, finish)
}

async fn text(response: Response<Incoming>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn sequential_requests_share_one_connection() {
    let (addr, accepted, _finish) = server().await;
    let pool = pool(addr);
    for _ in 0..20 {
        let response = pool.send(get("/")).await.expect("answered");
        assert_eq!(text(response).await, "ok");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert_eq!(pool.kept(), 1);
}

#[tokio::test]
async fn a_connection_still_streaming_is_passed_over_then_reused() {
    let (addr, accepted, finish) = server().await;
    let pool = pool(addr);
    let streaming = pool.send(get("/stream")).await.expect("head answered");
    // The first connection's answer is still coming: this request needs another.
    let response = pool.send(get("/")).await.expect("answered");
    assert_eq!(text(response).await, "ok");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);

    finish.send(()).await.unwrap();
    assert_eq!(text(streaming).await, "first last");
    for _ in 0..10 {
        let response = pool.send(get("/")).await.expect("answered");
        assert_eq!(text(response).await, "ok");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "both were reused");
}

#[tokio::test]
async fn an_answer_abandoned_halfway_does_not_leave_its_connection_for_the_next() {
    let (addr, accepted, _finish) = server().await;
    let pool = pool(addr);
    let streaming = pool.send(get("/stream")).await.expect("head answered");
    drop(streaming);
    for _ in 0..5 {
        let response = pool.send(get("/")).await.expect("answered");
        assert_eq!(text(response).await, "ok");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

/// An app that closes every connection after one answer without saying so (no
/// `Connection: close`): each request after the first finds its kept connection closed,
/// or closing under it, and must still be answered.
#[tokio::test]
async fn an_app_that_closes_kept_connections_loses_no_request() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                let _ = stream.shutdown().await;
            });
        }
    });
    let pool = pool(addr);
    for _ in 0..20 {
        let response = pool.send(get("/")).await.expect("answered");
        assert_eq!(text(response).await, "ok");
    }
    assert!(pool.kept() <= 1, "closed connections leave the list");
}

#[tokio::test]
async fn an_app_that_is_not_there_is_a_connect_failure() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let error = pool(addr).send(get("/")).await.expect_err("refused");
    assert_eq!(error.code, ErrorCode::ConnectFailed);
}
