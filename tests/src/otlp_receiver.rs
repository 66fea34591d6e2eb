//! A stand-in OpenTelemetry collector: it takes OTLP/HTTP JSON at `POST /v1/traces` on
//! 127.0.0.1 and keeps what it received, or, made stalled, never answers (a collector
//! that has stopped reading).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::Value;
use tokio::net::TcpListener;

/// One span as received, with the `service.name` of the resource it came under.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    pub service_name: String,
    pub span: Value,
}

impl ReceivedSpan {
    /// A string or integer attribute's value, as text.
    pub fn attribute(&self, key: &str) -> Option<String> {
        let value = self.span["attributes"]
            .as_array()?
            .iter()
            .find(|a| a["key"] == key)?;
        let value = &value["value"];
        value["stringValue"]
            .as_str()
            .or_else(|| value["intValue"].as_str())
            .map(str::to_string)
    }
}

pub struct OtlpReceiver {
    pub addr: SocketAddr,
    bodies: Mutex<Vec<Value>>,
    stalled: bool,
}

impl OtlpReceiver {
    /// A collector that answers 200 to every export.
    pub async fn start() -> Arc<OtlpReceiver> {
        OtlpReceiver::serve(false).await
    }

    /// A collector that takes the request and never answers.
    pub async fn start_stalled() -> Arc<OtlpReceiver> {
        OtlpReceiver::serve(true).await
    }

    async fn serve(stalled: bool) -> Arc<OtlpReceiver> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind OTLP receiver");
        let receiver = Arc::new(OtlpReceiver {
            addr: listener.local_addr().expect("receiver addr"),
            bodies: Mutex::new(Vec::new()),
            stalled,
        });
        let serving = receiver.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let receiver = serving.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let receiver = receiver.clone();
                        async move { Ok::<_, std::convert::Infallible>(receiver.take(req).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        receiver
    }

    /// What `OUTRIGGER_OTLP_ENDPOINT` is set to.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn take(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let answer = |status| {
            let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
            *response.status_mut() = status;
            response
        };
        if req.method() != http::Method::POST || req.uri().path() != "/v1/traces" {
            return answer(StatusCode::NOT_FOUND);
        }
        if req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.as_bytes())
            != Some(b"application/json")
        {
            return answer(StatusCode::UNSUPPORTED_MEDIA_TYPE);
        }
        if self.stalled {
            std::future::pending::<()>().await;
        }
        let Ok(body) = req.into_body().collect().await else {
            return answer(StatusCode::BAD_REQUEST);
        };
        match serde_json::from_slice(&body.to_bytes()) {
            Ok(json) => {
                self.bodies.lock().expect("bodies lock").push(json);
                answer(StatusCode::OK)
            }
            Err(_) => answer(StatusCode::BAD_REQUEST),
        }
    }

    /// Every span received so far, in order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        let bodies = self.bodies.lock().expect("bodies lock");
        let mut spans = Vec::new();
        for body in bodies.iter() {
            for resource in body["resourceSpans"].as_array().into_iter().flatten() {
                let service_name = resource["resource"]["attributes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|a| a["key"] == "service.name")
                    .and_then(|a| a["value"]["stringValue"].as_str())
                    .unwrap_or_default()
                    .to_string();
                for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                    for span in scope["spans"].as_array().into_iter().flatten() {
                        spans.push(ReceivedSpan {
                            service_name: service_name.clone(),
                            span: span.clone(),
                        });
                    }
                }
            }
        }
        spans
    }

    /// The spans of one trace (its id in hex).
    pub fn trace(&self, trace_id: &str) -> Vec<ReceivedSpan> {
        self.spans()
            .into_iter()
            .filter(|s| s.span["traceId"] == trace_id)
            .collect()
    }
}
