//! Opaque TCP into a sidecar's inbound port, as a caller's sidecar sends it
//! (docs/opaque-tcp.md): mTLS with ALPN `outrigger-tcp/1`, a 3-byte header naming the
//! app port, then raw bytes both ways. The ServerPolicy decides who may connect; a rule
//! with an HTTP `match` never admits TCP; a refused caller's connection is closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use outrigger_certs::{Ca, CertStore, ServerIdVerifier, SpiffeId, TrustBundle, WorkloadKey};
use outrigger_tests::{Mesh, START_LIMIT, Sidecar, eventually, free_port, loopback};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SERVER_POLICY: &str = "apiVersion: outrigger.dev/v1alpha1
kind: ServerPolicy
metadata: {name: db, namespace: shop}
spec:
  targetRef: {kind: MeshService, name: db}
  authorization:
    default: deny
    rules:
      - from: [\"spiffe://cluster.local/ns/ops/sa/*\"]
        match: {pathPrefix: /metrics}
      - from: [\"spiffe://cluster.local/ns/shop/sa/orders\"]
";

/// A TCP echo server that speaks no HTTP: it sends back whatever it reads.
async fn tcp_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

struct Db {
    mesh: Mesh,
    sidecar: Sidecar,
}

async fn db() -> Db {
    let port = free_port();
    let mut mesh = Mesh::new();
    mesh.add_service("shop", "db", "shop/db", &[loopback(port)]);
    mesh.write_policy("server-policy.yaml", SERVER_POLICY);
    mesh.start_control_plane().await;
    // No OUTRIGGER_APP_ADDR: the header alone says which port the bytes are for.
    let sidecar = mesh.sidecar("db", "shop/db", None, port).await;
    Db { mesh, sidecar }
}

impl Db {
    /// An opaque connection to the inbound port as `identity` ("ns/sa"), for `port`.
    async fn connect_as(
        &self,
        identity: &str,
        port: u16,
    ) -> tokio_rustls::client::TlsStream<TcpStream> {
        let id = SpiffeId::from_short("cluster.local", identity).expect("identity");
        let ca = Ca::load(&self.mesh.data_dir()).expect("mesh CA");
        let key = WorkloadKey::generate().expect("key");
        let issued = ca
            .sign_csr(
                &key.csr_pem(&id).expect("CSR"),
                &id,
                Duration::from_secs(600),
            )
            .expect("certificate");
        let store = CertStore::new();
        store.set(key.certified_key(issued.chain).expect("certified key"));
        let anchors = std::fs::read_to_string(self.mesh.trust_anchor()).expect("anchors");
        let bundle = TrustBundle::from_pem(&anchors).expect("bundle");
        let server = SpiffeId::from_short("cluster.local", "shop/db").expect("id");
        let verifier = ServerIdVerifier::new(bundle, server);
        let config = outrigger_certs::client_config(Some(store), verifier, &[b"outrigger-tcp/1"])
            .expect("client config");
        let tcp = TcpStream::connect(self.sidecar.inbound)
            .await
            .expect("connect");
        let name = ServerName::IpAddress(self.sidecar.inbound.ip().into());
        let mut tls = tokio_rustls::TlsConnector::from(Arc::<rustls::ClientConfig>::clone(&config))
            .connect(name, tcp)
            .await
            .expect("mTLS handshake");
        assert_eq!(
            tls.get_ref().1.alpn_protocol(),
            Some(&b"outrigger-tcp/1"[..])
        );
        let [high, low] = port.to_be_bytes();
        tls.write_all(&[1, high, low]).await.expect("header");
        tls
    }
}

#[tokio::test]
async fn an_allowed_caller_gets_the_app_bytes_both_ways_with_half_close() {
    let echo = tcp_echo().await;
    let db = db().await;
    let mut conn = db.connect_as("shop/orders", echo.port()).await;
    // Not HTTP, and more than one packet's worth.
    let sent: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    conn.write_all(&sent).await.expect("send");
    // Half-close: the echo sees EOF, finishes, and its answer still comes back whole.
    conn.shutdown().await.expect("shutdown");
    let mut back = Vec::new();
    conn.read_to_end(&mut back).await.expect("read");
    assert!(
        back == sent,
        "echoed {} of {} bytes",
        back.len(),
        sent.len()
    );

    let sidecar = &db.sidecar;
    eventually("the inbound TCP metrics count it", START_LIMIT, || async {
        let sent = sidecar
            .metric_sum(
                "outrigger_tcp_bytes_total",
                &[("direction", "inbound"), ("way", "sent")],
            )
            .await;
        let closed = sidecar
            .metric_sum("outrigger_tcp_close_total", &[("direction", "inbound")])
            .await;
        sent == 200_000.0 && closed == 1.0
    })
    .await;
}

#[tokio::test]
async fn a_refused_caller_has_its_connection_closed() {
    let echo = tcp_echo().await;
    let db = db().await;
    // Not named by any rule; and named only by a rule with an HTTP match.
    for caller in ["shop/evil", "ops/monitor"] {
        let mut conn = db.connect_as(caller, echo.port()).await;
        let _ = conn.write_all(b"hello?").await;
        let mut back = Vec::new();
        let read = tokio::time::timeout(START_LIMIT, conn.read_to_end(&mut back))
            .await
            .expect("closed, not left hanging");
        assert!(
            back.is_empty(),
            "{caller}: got {:?} ({read:?})",
            String::from_utf8_lossy(&back)
        );
    }
    let process = &db.sidecar.process;
    eventually(
        "the log names the refusal and the rule",
        START_LIMIT,
        || async {
            let log = process.log();
            log.contains("opaque TCP connection denied by the server policy")
                && log.contains("authorization.rules[0] matches the caller but has an HTTP `match`")
        },
    )
    .await;
}
