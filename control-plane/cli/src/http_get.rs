//! One GET to the control plane's plain-HTTP port, answered with JSON: what `outrigger
//! status` and `outrigger stat` ask.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;

/// Connecting and answering both fit in this, or the control plane is as good as down.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(5);

/// `--http` as given (`127.0.0.1:8080`, `http://host:port/`) to `host:port`.
pub(crate) fn authority(http: &str) -> String {
    http.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// `GET path` on `addr`, read as JSON, within [`TIMEOUT`].
pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
    addr: &str,
    path: &str,
) -> Result<T, String> {
    tokio::time::timeout(TIMEOUT, get(addr, path))
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {TIMEOUT:?}")))
}

async fn get<T: serde::de::DeserializeOwned>(addr: &str, path: &str) -> Result<T, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request = Request::get(path)
        .header(http::header::HOST, addr)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
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
    if status != StatusCode::OK {
        return Err(format!(
            "GET {path} answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("GET {path}: unexpected answer: {e}"))
}
