//! Real HTTP clients for the tests: HTTP/1.1 and HTTP/2 (prior knowledge) as an app would
//! speak to its sidecar, and raw TLS for knocking on an inbound port.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// What came back.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The `outrigger-error` header, if the proxy made this response.
    pub fn mesh_error(&self) -> Option<&str> {
        self.headers
            .get("outrigger-error")
            .and_then(|v| v.to_str().ok())
    }
}

async fn read(response: http::Response<hyper::body::Incoming>) -> Result<Reply, String> {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A kept-alive HTTP/1.1 connection to a sidecar's outbound port.
pub struct Http1 {
    sender: http1::SendRequest<Empty<Bytes>>,
}

impl Http1 {
    pub async fn connect(addr: SocketAddr) -> Result<Http1, String> {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let (sender, conn) = http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(Http1 { sender })
    }

    /// `GET path` with `Host: host` and extra headers.
    pub async fn get(
        &mut self,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Reply, String> {
        self.send("GET", host, path, headers).await
    }

    /// `method path` (no body) with `Host: host` and extra headers.
    pub async fn send(
        &mut self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Reply, String> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", host);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Empty::new()).map_err(|e| e.to_string())?;
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        read(response).await
    }
}

/// One HTTP/1.1 request on a new connection.
pub async fn get_h1(addr: SocketAddr, host: &str, path: &str) -> Result<Reply, String> {
    Http1::connect(addr).await?.get(host, path, &[]).await
}

/// One HTTP/1.1 request in absolute form, as an `http_proxy` client sends it.
pub async fn get_h1_absolute(addr: SocketAddr, url: &str) -> Result<Reply, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let uri: http::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let host = uri.authority().map(|a| a.to_string()).unwrap_or_default();
    let request = Request::get(uri)
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    read(
        sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?,
    )
    .await
}

/// One HTTP/2 (prior knowledge) request, as a gRPC-style app sends it.
pub async fn get_h2(addr: SocketAddr, authority: &str, path: &str) -> Result<Reply, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request = Request::get(format!("http://{authority}{path}"))
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    read(
        sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?,
    )
    .await
}

/// A TLS client with an optional client certificate, verifying the server as `expected`.
pub fn tls_client(
    certs: Option<Arc<outrigger_certs::CertStore>>,
    bundle: Arc<outrigger_certs::TrustBundle>,
    expected: outrigger_certs::SpiffeId,
) -> tokio_rustls::TlsConnector {
    let verifier = outrigger_certs::ServerIdVerifier::new(bundle, expected);
    let config = outrigger_certs::client_config(certs, verifier, &[b"h2"]).expect("client config");
    tokio_rustls::TlsConnector::from(config)
}

/// HTTP/2 over TLS straight to an inbound port, bypassing the caller's sidecar.
pub async fn get_h2_tls(
    addr: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
    authority: &str,
    path: &str,
) -> Result<Reply, String> {
    send_h2_tls(addr, connector, "GET", authority, path).await
}

/// Like [`get_h2_tls`], with any method (no body).
pub async fn send_h2_tls(
    addr: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
    method: &str,
    authority: &str,
    path: &str,
) -> Result<Reply, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (mut sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .map_err(|e| format!("HTTP/2: {e}"))?;
    tokio::spawn(conn);
    let request = Request::builder()
        .method(method)
        .uri(format!("http://{authority}{path}"))
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    read(
        sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?,
    )
    .await
}
