//! Who is refused: a plaintext caller, a caller with a certificate from another CA, and a
//! server presenting an identity other than the service's.

use std::time::Duration;

use outrigger_certs::{Ca, CertStore, SpiffeId, TrustBundle, WorkloadKey, init_ca};
use outrigger_tests::{EchoApp, Mesh, free_port, get_h1, get_h2_tls, id, loopback, tls_client};

/// A certificate for `identity` signed by `ca`, in a store a TLS client can present.
fn store(ca: &Ca, identity: &SpiffeId) -> std::sync::Arc<CertStore> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_refuses_plaintext_and_foreign_certificates() {
    let app = EchoApp::start("payments").await;
    let port = free_port();
    let mut mesh = Mesh::new();
    mesh.add_service("shop", "payments", "shop/payments", &[loopback(port)]);
    mesh.start_control_plane().await;
    let payments = mesh
        .sidecar("payments", "shop/payments", Some(app.addr), port)
        .await;

    // Plain HTTP to the inbound port: no HTTP answer at all.
    let plaintext = get_h1(payments.inbound, "payments.shop", "/").await;
    assert!(
        plaintext.is_err(),
        "plaintext must be refused: {plaintext:?}"
    );

    let bundle =
        TrustBundle::from_pem(&std::fs::read_to_string(mesh.trust_anchor()).unwrap()).unwrap();

    // The mesh's own CA: accepted (so that the refusal below is about the CA, nothing else).
    let ours = Ca::load(&mesh.data_dir()).unwrap();
    let connector = tls_client(
        Some(store(&ours, &id("shop/orders"))),
        bundle.clone(),
        id("shop/payments"),
    );
    let reply = get_h2_tls(payments.inbound, &connector, "payments.shop", "/")
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json()["client_id"],
        "spiffe://cluster.local/ns/shop/sa/orders"
    );

    // Same identity, signed by another CA: refused.
    let elsewhere = tempfile::tempdir().unwrap();
    init_ca(elsewhere.path(), "cluster.local").unwrap();
    let foreign = Ca::load(elsewhere.path()).unwrap();
    let connector = tls_client(
        Some(store(&foreign, &id("shop/orders"))),
        bundle.clone(),
        id("shop/payments"),
    );
    let refused = get_h2_tls(payments.inbound, &connector, "payments.shop", "/").await;
    assert!(
        refused.is_err(),
        "a foreign CA must be refused: {refused:?}"
    );

    // No client certificate: refused.
    let connector = tls_client(None, bundle, id("shop/payments"));
    let refused = get_h2_tls(payments.inbound, &connector, "payments.shop", "/").await;
    assert!(
        refused.is_err(),
        "a caller without a certificate must be refused"
    );

    assert_eq!(app.requests(), 1, "only the mesh caller reached the app");
    assert!(
        payments
            .process
            .log()
            .contains("refused inbound connection"),
        "the log says why: {}",
        payments.process.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_refuses_a_server_with_the_wrong_identity() {
    let app = EchoApp::start("impostor").await;
    let port = free_port();
    let mut mesh = Mesh::new();
    // payments must present shop/payments; its endpoint is a sidecar of shop/impostor.
    mesh.add_service("shop", "payments", "shop/payments", &[loopback(port)]);
    mesh.start_control_plane().await;
    let orders = mesh
        .sidecar("orders", "shop/orders", None, free_port())
        .await;
    let _impostor = mesh
        .sidecar("impostor", "shop/impostor", Some(app.addr), port)
        .await;

    let reply = get_h1(orders.outbound, "payments.shop", "/").await.unwrap();
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert_eq!(reply.mesh_error(), Some("tls-failed"));
    let message = reply.json()["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("spiffe://cluster.local/ns/shop/sa/impostor")
            && message.contains("expected spiffe://cluster.local/ns/shop/sa/payments"),
        "{message}"
    );
    assert_eq!(app.requests(), 0, "nothing was sent to the impostor");
    assert!(
        orders.process.log().contains("refusing peer"),
        "{}",
        orders.process.log()
    );
}
