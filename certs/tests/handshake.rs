//! Real TLS 1.3 handshakes between the configs this crate builds, in memory.

use std::sync::Arc;
use std::time::Duration;

use outrigger_certs::{
    Ca, CertStore, ClientIdVerifier, ServerIdVerifier, SpiffeId, TrustBundle, WorkloadKey,
    client_config, describe_tls_error, init_ca, peer_identity, server_config,
};
use rustls::{ClientConnection, ServerConnection};

struct Mesh {
    _dir: tempfile::TempDir,
    ca: Ca,
    bundle: Arc<TrustBundle>,
}

fn mesh() -> Mesh {
    let dir = tempfile::tempdir().unwrap();
    init_ca(dir.path(), "cluster.local").unwrap();
    let ca = Ca::load(dir.path()).unwrap();
    let bundle = TrustBundle::from_pem(ca.trust_bundle_pem()).unwrap();
    Mesh {
        _dir: dir,
        ca,
        bundle,
    }
}

fn id(short: &str) -> SpiffeId {
    SpiffeId::from_short("cluster.local", short).unwrap()
}

fn store_for(ca: &Ca, identity: &SpiffeId) -> Arc<CertStore> {
    let key = WorkloadKey::generate().unwrap();
    let issued = ca
        .sign_csr(
            &key.csr_pem(identity).unwrap(),
            identity,
            Duration::from_secs(600),
        )
        .unwrap();
    let store = CertStore::new();
    store.set(key.certified_key(issued.chain).unwrap());
    store
}

/// Drives both sides until the handshake ends; returns the first error, if any.
fn handshake(
    client: &mut ClientConnection,
    server: &mut ServerConnection,
) -> Result<(), rustls::Error> {
    for _ in 0..10 {
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            server.read_tls(&mut rd).unwrap();
        }
        server.process_new_packets()?;
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            client.read_tls(&mut rd).unwrap();
        }
        client.process_new_packets()?;
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
    }
    panic!("handshake did not finish");
}

fn connect(
    client_store: Option<Arc<CertStore>>,
    client_bundle: &Arc<TrustBundle>,
    expected_server: SpiffeId,
    server_store: Arc<CertStore>,
    server_bundle: &Arc<TrustBundle>,
) -> (Result<(), rustls::Error>, ServerConnection) {
    let client_cfg = client_config(
        client_store,
        ServerIdVerifier::new(client_bundle.clone(), expected_server),
        &[b"h2"],
    )
    .unwrap();
    let server_cfg = server_config(
        server_store,
        ClientIdVerifier::required(server_bundle.clone(), "cluster.local"),
        &[b"h2"],
    )
    .unwrap();
    let mut client = ClientConnection::new(client_cfg, "127.0.0.1".try_into().unwrap()).unwrap();
    let mut server = ServerConnection::new(server_cfg).unwrap();
    (handshake(&mut client, &mut server), server)
}

#[test]
fn mutual_tls_with_expected_identities() {
    let m = mesh();
    let (result, server) = connect(
        Some(store_for(&m.ca, &id("shop/orders"))),
        &m.bundle,
        id("shop/payments"),
        store_for(&m.ca, &id("shop/payments")),
        &m.bundle,
    );
    result.unwrap();
    assert_eq!(
        peer_identity(server.peer_certificates()),
        Some(id("shop/orders"))
    );
}

#[test]
fn client_refuses_server_with_wrong_identity() {
    let m = mesh();
    let (result, _) = connect(
        Some(store_for(&m.ca, &id("shop/orders"))),
        &m.bundle,
        id("shop/payments"),
        store_for(&m.ca, &id("shop/impostor")),
        &m.bundle,
    );
    let err = describe_tls_error(&result.unwrap_err());
    assert_eq!(
        err,
        "peer identity is spiffe://cluster.local/ns/shop/sa/impostor, \
         expected spiffe://cluster.local/ns/shop/sa/payments"
    );
    assert!(
        err.contains("expected spiffe://cluster.local/ns/shop/sa/payments"),
        "{err}"
    );
}

#[test]
fn server_refuses_client_from_another_ca() {
    let m = mesh();
    let other = mesh();
    let (result, _) = connect(
        Some(store_for(&other.ca, &id("shop/orders"))),
        &m.bundle,
        id("shop/payments"),
        store_for(&m.ca, &id("shop/payments")),
        &m.bundle,
    );
    assert!(result.is_err());
}

#[test]
fn server_requires_a_client_certificate() {
    let m = mesh();
    let (result, _) = connect(
        None,
        &m.bundle,
        id("shop/payments"),
        store_for(&m.ca, &id("shop/payments")),
        &m.bundle,
    );
    assert!(result.is_err());
}

#[test]
fn rotated_bundle_trusts_the_new_anchor() {
    let m = mesh();
    let other = mesh();
    // The client trusts only `m`'s anchor; the server's certificate comes from `other`.
    let client_bundle = TrustBundle::from_pem(m.ca.trust_bundle_pem()).unwrap();
    let server_store = store_for(&other.ca, &id("shop/payments"));
    let server_bundle = TrustBundle::from_pem(&format!(
        "{}{}",
        m.ca.trust_bundle_pem(),
        other.ca.trust_bundle_pem()
    ))
    .unwrap();
    let client_store = Some(store_for(&m.ca, &id("shop/orders")));
    let (before, _) = connect(
        client_store.clone(),
        &client_bundle,
        id("shop/payments"),
        server_store.clone(),
        &server_bundle,
    );
    assert!(before.is_err());
    let both = format!("{}{}", m.ca.trust_bundle_pem(), other.ca.trust_bundle_pem());
    assert!(client_bundle.update(&both).unwrap());
    let (after, _) = connect(
        client_store,
        &client_bundle,
        id("shop/payments"),
        server_store,
        &server_bundle,
    );
    after.unwrap();
}
