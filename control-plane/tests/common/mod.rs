//! The harness: the real `outrigger` binary as a child process, and a real TLS client
//! that verifies the control plane's identity like a sidecar does.

#![allow(dead_code)] // each test file uses a different part of it

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use outrigger_api::{ServiceView, Snapshot, SnapshotDelta, WatchEvent};
use outrigger_certs::{
    CertStore, ServerIdVerifier, SpiffeId, TrustBundle, WorkloadKey, certs_from_pem, client_config,
};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

/// The `outrigger` binary (package `outrigger-cli`), built next to this test binary:
/// target/<profile>/deps/<test> → target/<profile>/outrigger. It is another package's
/// binary, so cargo gives no `CARGO_BIN_EXE_` for it; `cargo test --workspace` builds it
/// before running any test.
pub fn bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .join("outrigger");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (it builds the binaries), \
         or `cargo build --bin outrigger` first",
        path.display()
    );
    path
}

pub const PAYMENTS: &str = "\
apiVersion: outrigger.dev/v1alpha1
kind: MeshService
metadata: {name: payments, namespace: shop}
spec:
  identity: spiffe://cluster.local/ns/shop/sa/payments
  endpoints:
    - address: 127.0.0.1:14143
";

/// DESIGN.md's example: MeshService, TrafficPolicy and ServerPolicy shop/payments.
pub const DESIGN_EXAMPLE: &str = include_str!("../fixtures/design-example.yaml");

/// A data dir with a CA (made by `outrigger ca init`) and a policy dir.
pub struct Mesh {
    _tmp: tempfile::TempDir,
    pub data: PathBuf,
    pub policy: PathBuf,
}

impl Mesh {
    pub fn new() -> Mesh {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data = tmp.path().join("data");
        let policy = tmp.path().join("policy");
        std::fs::create_dir(&policy).expect("policy dir");
        std::fs::write(policy.join("shop.yaml"), PAYMENTS).expect("policy file");
        let out = outrigger(&["ca", "init", "--data-dir", path(&data)]);
        assert!(out.status.success(), "ca init: {}", stderr(&out));
        Mesh {
            _tmp: tmp,
            data,
            policy,
        }
    }

    pub fn anchor_pem(&self) -> String {
        std::fs::read_to_string(self.data.join("ca/trust-anchor.pem")).expect("trust anchor")
    }

    /// A token from `outrigger token create` (stdout must be the token alone).
    pub fn token(&self, identity: &str) -> String {
        let out = outrigger(&[
            "token",
            "create",
            "--data-dir",
            path(&self.data),
            "--identity",
            identity,
        ]);
        assert!(out.status.success(), "token create: {}", stderr(&out));
        let token = String::from_utf8(out.stdout).expect("utf-8 token");
        assert_eq!(
            token.trim_end().lines().count(),
            1,
            "only the token: {token:?}"
        );
        token.trim_end().to_string()
    }
}

pub fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

pub fn id(short: &str) -> SpiffeId {
    SpiffeId::from_short("cluster.local", short).expect("id")
}

/// Runs the CLI to completion.
pub fn outrigger(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .expect("run outrigger")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The `error: ...` lines of a failed run; there must be exactly one.
pub fn the_error_line(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "exit 1: {}", stderr(out));
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 1, "one error line: {err}");
    lines[0].to_string()
}

/// A running `outrigger control-plane`, killed on drop.
pub struct ControlPlane {
    child: Child,
    pub api: SocketAddr,
    pub http: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl ControlPlane {
    /// Starts on free ports and returns once `/ready` answers 200.
    pub fn start(mesh: &Mesh) -> ControlPlane {
        ControlPlane::start_with(mesh, &[])
    }

    /// [`ControlPlane::start`] with more flags.
    pub fn start_with(mesh: &Mesh, flags: &[&str]) -> ControlPlane {
        let mut child = Command::new(bin())
            .args([
                "control-plane",
                "--listen",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
            ])
            .args(flags)
            .env("OUTRIGGER_DATA_DIR", &mesh.data)
            .env("OUTRIGGER_POLICY_DIR", &mesh.policy)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn control plane");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        // Keeps draining stderr for the child's whole life, so it never blocks on a pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
        let (mut api, mut http) = (None, None);
        while api.is_none() || http.is_none() {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| {
                    panic!(
                        "control plane did not say where it listens:\n{}",
                        log.lock().unwrap()
                    )
                });
            api = api.or_else(|| addr_after(&line, "listening on https://"));
            http = http.or_else(|| addr_after(&line, "listening on http://"));
        }
        let cp = ControlPlane {
            child,
            api: api.unwrap(),
            http: http.unwrap(),
            log,
        };
        for _ in 0..100 {
            if cp.get_plain("/ready").0 == 200 {
                return cp;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("control plane never became ready:\n{}", cp.log());
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// GET on the plain-HTTP port: (status, body).
    pub fn get_plain(&self, path: &str) -> (u16, String) {
        let Ok(mut tcp) = TcpStream::connect(self.http) else {
            return (0, String::new());
        };
        let _ = write!(
            tcp,
            "GET {path} HTTP/1.1\r\nhost: cp\r\nconnection: close\r\n\r\n"
        );
        let mut response = String::new();
        let _ = tcp.read_to_string(&mut response);
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        (status, body)
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(sent.success());
        self.child.wait().expect("wait")
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn addr_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// A client config as a sidecar builds it: trusts the anchor file, expects the control
/// plane's identity, presents `certs` if given.
pub fn tls_client(anchor_pem: &str, certs: Option<Arc<CertStore>>) -> Arc<ClientConfig> {
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
    let (status, json) =
        request_certificate(cp.api, tls_client(anchor_pem, None), &csr, Some(token)).await;
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

/// An open `GET /v1/watch` stream, read line by line; dropping it closes the connection.
/// It holds the state the lines add up to, as a proxy does.
pub struct WatchStream {
    body: Incoming,
    buffered: Vec<u8>,
    connection: tokio::task::JoinHandle<()>,
    held: Option<Snapshot>,
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl WatchStream {
    /// Opens `path` (`/v1/watch?...`) as `workload`.
    pub async fn open(cp: &ControlPlane, anchor: &str, workload: &Workload, path: &str) -> Self {
        let (response, connection) = send_on_connection(
            cp.api,
            tls_client(anchor, Some(workload.certs.clone())),
            "GET",
            path,
            None,
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "application/x-ndjson");
        WatchStream {
            body: response.into_body(),
            buffered: Vec::new(),
            connection,
            held: None,
        }
    }

    /// The state after the next line, applied as a proxy applies it (a delta must start
    /// from the version held); panics if no line comes within 30s (only a broken build
    /// waits that long).
    pub async fn next(&mut self) -> Snapshot {
        self.next_event().await;
        self.held.clone().expect("a state")
    }

    /// The state the lines so far add up to.
    pub fn held(&self) -> &Snapshot {
        self.held.as_ref().expect("a first line was read")
    }

    /// The next line as sent, and its length in bytes; applied to the state held.
    pub async fn next_event(&mut self) -> (WatchEvent, usize) {
        let line = tokio::time::timeout(Duration::from_secs(30), self.next_line())
            .await
            .expect("a line within 30s");
        let event: WatchEvent = serde_json::from_slice(&line).unwrap_or_else(|e| {
            panic!("not a WatchEvent ({e}): {}", String::from_utf8_lossy(&line))
        });
        match (&event, &mut self.held) {
            (WatchEvent::Full(snapshot), held) => *held = Some(snapshot.clone()),
            (WatchEvent::Delta(_), None) => panic!("the first line must be full: {event:?}"),
            (WatchEvent::Delta(delta), Some(held)) => apply(held, delta),
        }
        (event, line.len())
    }

    /// A line's bytes without its newline.
    async fn next_line(&mut self) -> Vec<u8> {
        loop {
            if let Some(end) = self.buffered.iter().position(|b| *b == b'\n') {
                let mut line: Vec<u8> = self.buffered.drain(..=end).collect();
                line.pop();
                return line;
            }
            let frame = self
                .body
                .frame()
                .await
                .expect("the stream goes on")
                .expect("frame");
            if let Some(data) = frame.data_ref() {
                self.buffered.extend_from_slice(data);
            }
        }
    }
}

/// Applies a delta as docs/watch-protocol.md says a proxy does.
fn apply(held: &mut Snapshot, delta: &SnapshotDelta) {
    assert_eq!(held.version, delta.base, "a delta from the version held");
    held.version = delta.version;
    if let Some(bundle) = &delta.trust_bundle {
        held.trust_bundle = bundle.clone();
    }
    let key = |s: &ServiceView| (s.namespace.clone(), s.name.clone());
    for gone in &delta.removed {
        held.services
            .retain(|s| (&s.namespace, &s.name) != (&gone.namespace, &gone.name));
    }
    for service in &delta.upserted {
        match held.services.binary_search_by_key(&key(service), key) {
            Ok(i) => held.services[i] = service.clone(),
            Err(i) => held.services.insert(i, service.clone()),
        }
    }
    if let Some(update) = &delta.server_policy {
        held.server_policy = update.spec.clone();
    }
}

/// Replaces a file as editors do: write a temp file beside it, then rename.
pub fn write_atomically(file: &Path, text: &str) {
    let tmp = file.with_file_name(format!(
        ".{}.tmp",
        file.file_name().unwrap().to_str().unwrap()
    ));
    std::fs::write(&tmp, text).expect("write temp file");
    std::fs::rename(&tmp, file).expect("rename over the file");
}

/// Polls `check` every 20ms until it holds; panics after 30s. Sleeps on the runtime, so
/// that its tasks (connections) keep running.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..1500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}
