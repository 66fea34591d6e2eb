//! A middle-tier app for multi-hop tests: each request it receives is passed on to the
//! next service through its own sidecar's outbound port, carrying the headers a well-
//! behaved app propagates (`outrigger-deadline-ms`, `grpc-timeout`,
//! `outrigger-retry-attempt`, `traceparent`, `x-request-id`). It answers with the next
//! hop's status and body.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};

/// Headers copied from the incoming request onto the outgoing one.
const PROPAGATED: [&str; 5] = [
    "outrigger-deadline-ms",
    "grpc-timeout",
    "outrigger-retry-attempt",
    "traceparent",
    "x-request-id",
];

pub struct RelayApp {
    pub addr: SocketAddr,
    /// Requests received.
    received: AtomicUsize,
}

impl RelayApp {
    /// Relays to `host` through the sidecar outbound port `via`.
    pub async fn start(via: SocketAddr, host: &str) -> Arc<RelayApp> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let app = Arc::new(RelayApp {
            addr: listener.local_addr().expect("relay addr"),
            received: AtomicUsize::new(0),
        });
        let (serving, host) = (app.clone(), host.to_string());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (app, host) = (serving.clone(), host.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let (app, host) = (app.clone(), host.clone());
                        async move {
                            app.received.fetch_add(1, Ordering::SeqCst);
                            Ok::<_, std::convert::Infallible>(relay(via, &host, req).await)
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        app
    }

    pub fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}

async fn relay(via: SocketAddr, host: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let mut outgoing = Request::builder()
        .method(req.method())
        .uri(
            req.uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/"),
        )
        .header(http::header::HOST, host);
    for name in PROPAGATED {
        if let Some(value) = req.headers().get(name) {
            outgoing = outgoing.header(name, value);
        }
    }
    let result = async {
        let request = outgoing
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let tcp = TcpStream::connect(via).await.map_err(|e| e.to_string())?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, String>((status, body))
    };
    match result.await {
        Ok((status, body)) => {
            let mut response = Response::new(Full::new(body));
            *response.status_mut() = status;
            response
        }
        Err(error) => {
            let mut response = Response::new(Full::new(Bytes::from(error)));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response
        }
    }
}
