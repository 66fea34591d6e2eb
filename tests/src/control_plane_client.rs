//! A client of the control plane's API, as a sidecar is one: TLS that trusts the anchor
//! file and expects the control plane's identity, HTTP/1.1 requests, certificate requests,
//! and enrolment (a key and the certificate issued for it).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use outrigger_certs::{
    CertStore, ServerIdVerifier, SpiffeId, TrustBundle, WorkloadKey, certs_from_pem, client_config,
};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio_rustls::TlsConnector;

use crate::control_plane::ControlPlane;

/// The SPIFFE id of "ns/sa" in the trust domain `cluster.local`.
pub fn id(short: &str) -> SpiffeId {
    SpiffeId::from_short("cluster.local", short).expect("id")
}

/// A client config as a sidecar builds it: trusts the anchor file, expects the control
/// plane's identity, presents `certs` if given.
pub fn control_plane_tls(anchor_pem: &str, certs: Option<Arc<CertStore>>) -> Arc<ClientConfig> {
    let bundle = TrustBundle::from_pem(anchor_pem).expect("bundle");
    let verifier = ServerIdVerifier::new(bundle, id("outrigger/control-plane"));
    client_config(certs, verifier, &[b"http/1.1"]).expect("client config")
}

/// Sends one request over a new TLS connection; returns the response with its body unread.
pub async fn send(
    api: SocketAddr,
    tls: Arc<ClientConfig>,
    method: &str,
    path: &str,
    body: Option<String>,
) -> Response<Incoming> {
    send_on_connection(api, tls, method, path, body).await.0
}

/// [`send`], also returning the connection's task: aborting it closes the connection.
pub async fn send_on_connection(
    api: SocketAddr,
    tls: Arc<ClientConfig>,
    method: &str,
    path: &str,
    body: Option<String>,
) -> (Response<Incoming>, tokio::task::JoinHandle<()>) {
    let tcp = tokio::net::TcpStream::connect(api).await.expect("connect");
    let name = ServerName::try_from("control-plane").expect("name");
    let stream = TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .expect("TLS handshake with the control plane");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP handshake");
    let connection = tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "control-plane")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    (response, connection)
}

/// One TLS connection to the API kept alive for many requests, as a sidecar's
/// heartbeats are sent.
pub struct KeepAlive {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    connection: tokio::task::JoinHandle<()>,
}

impl KeepAlive {
    pub async fn connect(api: SocketAddr, tls: Arc<ClientConfig>) -> KeepAlive {
        let tcp = tokio::net::TcpStream::connect(api).await.expect("connect");
        let name = ServerName::try_from("control-plane").expect("name");
        let stream = TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .expect("TLS handshake with the control plane");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP handshake");
        let connection = tokio::spawn(async move {
            let _ = conn.await;
        });
        KeepAlive { sender, connection }
    }

    /// One request on the connection: (status, body as text).
    pub async fn call(&mut self, method: &str, path: &str, body: String) -> (StatusCode, String) {
        self.sender
            .ready()
            .await
            .expect("the connection stays open");
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "control-plane")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        let response = self.sender.send_request(request).await.expect("response");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// One whole request: (status, body as text).
pub async fn call(
    api: SocketAddr,
    tls: Arc<ClientConfig>,
    method: &str,
    path: &str,
    body: Option<String>,
) -> (StatusCode, String) {
    let response = send(api, tls, method, path, body).await;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// `POST /v1/certificates` as JSON.
pub async fn request_certificate(
    api: SocketAddr,
    tls: Arc<ClientConfig>,
    csr: &str,
    token: Option<&str>,
) -> (StatusCode, serde_json::Value) {
    let mut body = serde_json::json!({ "csr": csr });
    if let Some(token) = token {
        body["token"] = token.into();
    }
    let (status, text) = call(api, tls, "POST", "/v1/certificates", Some(body.to_string())).await;
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, json)
}

/// A key and the certificate issued for it, ready to present over mTLS.
pub struct Workload {
    pub certs: Arc<CertStore>,
    pub chain_pem: String,
}

/// Gets a certificate with `token`, and a store presenting it.
pub async fn enroll(
    cp: &ControlPlane,
    anchor_pem: &str,
    token: &str,
    asks_for: &SpiffeId,
) -> Workload {
    let key = WorkloadKey::generate().expect("key");
    let csr = key.csr_pem(asks_for).expect("csr");
    let (status, json) = request_certificate(
        cp.api,
        control_plane_tls(anchor_pem, None),
        &csr,
        Some(token),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let chain_pem = json["certificate_chain"]
        .as_str()
        .expect("chain")
        .to_string();
    let chain = certs_from_pem(&chain_pem).expect("chain PEM");
    let certs = CertStore::new();
    certs.set(key.certified_key(chain).expect("chain matches the key"));
    Workload { certs, chain_pem }
}

/// The SPIFFE id of the leaf of a PEM chain.
pub fn identity_of(chain_pem: &str) -> SpiffeId {
    let chain = certs_from_pem(chain_pem).expect("chain PEM");
    outrigger_certs::spiffe_id_of(&chain[0]).expect("SPIFFE id")
}
