//! A tiny app to stand behind a sidecar: it answers every request with what it saw (its
//! name, the HTTP version, the path and the `outrigger-client-id` header), speaks HTTP/1.1
//! and HTTP/2, and can hold `/hold` requests until the test releases them.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};

pub struct EchoApp {
    pub addr: SocketAddr,
    pub name: String,
    requests: AtomicUsize,
    held: AtomicUsize,
    arrived: Notify,
    gate: Semaphore,
}

impl EchoApp {
    pub async fn start(name: &str) -> Arc<EchoApp> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind app");
        let app = Arc::new(EchoApp {
            addr: listener.local_addr().expect("app addr"),
            name: name.to_string(),
            requests: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            arrived: Notify::new(),
            gate: Semaphore::new(0),
        });
        let serving = app.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let app = serving.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let app = app.clone();
                        async move { Ok::<_, Infallible>(app.answer(req).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        app
    }

    /// Requests this app has received.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Waits until `n` `/hold` requests are being held.
    pub async fn wait_held(&self, n: usize) {
        loop {
            let notified = self.arrived.notified();
            if self.held.load(Ordering::SeqCst) >= n {
                return;
            }
            notified.await;
        }
    }

    /// Lets `n` held requests answer.
    pub fn release(&self, n: usize) {
        self.gate.add_permits(n);
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        if req.uri().path() == "/hold" {
            self.held.fetch_add(1, Ordering::SeqCst);
            self.arrived.notify_waiters();
            if let Ok(permit) = self.gate.acquire().await {
                permit.forget();
            }
        }
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let body = serde_json::json!({
            "app": self.name,
            "version": format!("{:?}", req.version()),
            "path": req.uri().path(),
            "host": header("host").or_else(|| req.uri().authority().map(|a| a.to_string())),
            "client_id": header("outrigger-client-id"),
            "client_ids": req.headers().get_all("outrigger-client-id").iter().count(),
        });
        Response::new(Full::new(Bytes::from(body.to_string())))
    }
}
