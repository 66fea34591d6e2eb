//! The demo's two tiny services. `payments` answers with who called it (the identity its
//! sidecar verified); `orders` serves `/checkout` by calling payments through its own
//! sidecar, as any app in the mesh would: plain HTTP to localhost, `Host: payments.demo`.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};

/// Serves `handler` on `listener` until the process ends.
fn serve<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string() + "\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// `payments`: tells the caller who it thinks called.
pub(crate) fn payments(listener: TcpListener) {
    serve(listener, |req: Request<Incoming>| async move {
        let caller = req
            .headers()
            .get("outrigger-client-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("(none: not called through the mesh)")
            .to_string();
        json(
            StatusCode::OK,
            serde_json::json!({
                "service": "payments",
                "path": req.uri().path(),
                "caller": caller,
            }),
        )
    });
}

/// `orders`: `/checkout` calls payments through the sidecar at `outbound`.
pub(crate) fn orders(listener: TcpListener, outbound: SocketAddr) {
    serve(listener, move |req: Request<Incoming>| async move {
        if req.uri().path() != "/checkout" {
            return json(
                StatusCode::OK,
                serde_json::json!({"service": "orders", "try": "/checkout"}),
            );
        }
        match call_payments(outbound).await {
            Ok((status, body)) => json(
                StatusCode::OK,
                serde_json::json!({
                    "service": "orders",
                    "payments_status": status,
                    "payments_said": serde_json::from_slice::<serde_json::Value>(&body)
                        .unwrap_or_else(|_| String::from_utf8_lossy(&body).into()),
                }),
            ),
            Err(error) => json(
                StatusCode::BAD_GATEWAY,
                serde_json::json!({"service": "orders", "error": error}),
            ),
        }
    });
}

async fn call_payments(outbound: SocketAddr) -> Result<(u16, Bytes), String> {
    let tcp = TcpStream::connect(outbound)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request = Request::get("/charge")
        .header(http::header::HOST, "payments.demo")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}
