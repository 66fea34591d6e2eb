//! A tiny app to stand behind a sidecar: it answers every request with what it saw (its
//! name, the HTTP version, the path, the `outrigger-client-id` header and the trace
//! context headers), speaks HTTP/1.1 and HTTP/2, can hold `/hold` requests until the
//! test releases them, can be made slow, and answers `/health` with 200 or 503 as the
//! test says. It counts what resilience tests need: requests, requests in flight (and
//! the most at once), and retried requests (those carrying `outrigger-retry-attempt`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};

use crate::faults::{Action, Fault};

pub struct EchoApp {
    pub addr: SocketAddr,
    pub name: String,
    /// Added to every answer, in milliseconds (a slow instance).
    delay_ms: AtomicU64,
    /// What `/health` answers: 200 while true, 503 once false.
    healthy: AtomicBool,
    /// The fault injected into every request (headers may add their own).
    fault: std::sync::Mutex<Fault>,
    requests: AtomicUsize,
    /// Requests being answered now (a cancelled one leaves when the sidecar drops it).
    in_flight: AtomicUsize,
    /// The most requests ever in flight at once.
    peak_in_flight: AtomicUsize,
    /// Requests that carried `outrigger-retry-attempt`.
    retried: AtomicUsize,
    held: AtomicUsize,
    arrived: Notify,
    gate: Semaphore,
}

impl EchoApp {
    /// Starts on a free loopback port.
    pub async fn start(name: &str) -> Arc<EchoApp> {
        EchoApp::start_on(name, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts on `addr`: an app restarted after a crash comes back where its sidecar
    /// looks for it.
    pub async fn start_on(name: &str, addr: SocketAddr) -> Arc<EchoApp> {
        let listener = TcpListener::bind(addr).await.expect("bind app");
        let app = Arc::new(EchoApp {
            addr: listener.local_addr().expect("app addr"),
            name: name.to_string(),
            delay_ms: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            fault: std::sync::Mutex::new(Fault::default()),
            requests: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            peak_in_flight: AtomicUsize::new(0),
            retried: AtomicUsize::new(0),
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
                        async move { app.answer(req).await }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        app
    }

    /// Makes every answer this much slower.
    pub fn set_delay(&self, delay: std::time::Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Injects `fault` into every request from now on (`Fault::default()` heals).
    pub fn set_fault(&self, fault: Fault) {
        *self.fault.lock().expect("fault lock") = fault;
    }

    /// Makes `/health` answer 200 (true) or 503 (false).
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::SeqCst);
    }

    /// Requests this app has received (health checks not counted).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Requests being answered right now (a hanging one counts until the sidecar gives up
    /// on it and drops it).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// The most requests this app has had in flight at once.
    pub fn peak_in_flight(&self) -> usize {
        self.peak_in_flight.load(Ordering::SeqCst)
    }

    /// Requests that arrived with `outrigger-retry-attempt` (retries, not first tries).
    pub fn retried(&self) -> usize {
        self.retried.load(Ordering::SeqCst)
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

    /// The answer, or an error that makes hyper reset the connection (HTTP/1.1) or the
    /// stream (HTTP/2): the `reset` fault.
    async fn answer(&self, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, ResetFault> {
        if req.uri().path() == "/health" {
            let mut response = Response::new(Full::new(Bytes::from_static(b"health\n")));
            if !self.healthy.load(Ordering::SeqCst) {
                *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
            }
            return Ok(response);
        }
        self.requests.fetch_add(1, Ordering::SeqCst);
        if req.headers().contains_key("outrigger-retry-attempt") {
            self.retried.fetch_add(1, Ordering::SeqCst);
        }
        let _in_flight = InFlight::enter(self);
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        let fault = self
            .fault
            .lock()
            .expect("fault lock")
            .merged_with(req.headers());
        if let Some(delay) = fault.delay {
            tokio::time::sleep(delay).await;
        }
        match fault.action(fastrand::f64()) {
            Action::Answer => {}
            Action::Status(status) => {
                let mut response = Response::new(Full::new(Bytes::from(format!(
                    "{{\"app\":\"{}\",\"injected\":{status}}}",
                    self.name
                ))));
                *response.status_mut() = http::StatusCode::from_u16(status)
                    .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
                if let Some(seconds) = fault.retry_after {
                    response
                        .headers_mut()
                        .insert(http::header::RETRY_AFTER, http::HeaderValue::from(seconds));
                }
                return Ok(response);
            }
            Action::Reset => return Err(ResetFault),
            Action::Hang => std::future::pending::<()>().await,
        }
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
            "retry_attempt": header("outrigger-retry-attempt"),
            "deadline_ms": header("outrigger-deadline-ms"),
            "traceparent": header("traceparent"),
            "tracestate": header("tracestate"),
            "request_id": header("x-request-id"),
        });
        Ok(Response::new(Full::new(Bytes::from(body.to_string()))))
    }
}

/// One request in flight; leaves on drop, also when the request is cancelled.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(app: &'a EchoApp) -> InFlight<'a> {
        let now = app.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        app.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(&app.in_flight)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Returned by the service to make hyper reset instead of answering.
#[derive(Debug)]
pub struct ResetFault;

impl std::fmt::Display for ResetFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("injected reset")
    }
}

impl std::error::Error for ResetFault {}
