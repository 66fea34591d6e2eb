//! ServerPolicy on the inbound side: who may call which paths with which methods, with
//! identity globs and a default; and permissive mTLS, where plaintext callers are
//! accepted as unauthenticated and only `default: allow` lets them in.

use std::sync::Arc;
use std::time::Duration;

use outrigger_certs::{Ca, CertStore, SpiffeId, TrustBundle, WorkloadKey};
use outrigger_tests::{
    EchoApp, Http1, Mesh, Reply, START_LIMIT, Sidecar, eventually, free_port, get_h1, loopback,
    send_h2_tls, tls_client,
};

const ORDERS: &str = "spiffe://cluster.local/ns/shop/sa/orders";
const EVIL: &str = "spiffe://cluster.local/ns/shop/sa/evil";

/// payments (an echo app behind its sidecar) with this ServerPolicy `spec`.
struct Payments {
    mesh: Mesh,
    sidecar: Sidecar,
    app: Arc<EchoApp>,
}

async fn payments(spec: &str) -> Payments {
    let app = EchoApp::start("payments").await;
    let port = free_port();
    let mut mesh = Mesh::new();
    mesh.add_service("shop", "payments", "shop/payments", &[loopback(port)]);
    mesh.write_policy("server-policy.yaml", &server_policy(spec));
    mesh.start_control_plane().await;
    let sidecar = mesh
        .sidecar("payments", "shop/payments", Some(app.addr), port)
        .await;
    Payments { mesh, sidecar, app }
}

fn server_policy(spec: &str) -> String {
    format!(
        "apiVersion: outrigger.dev/v1alpha1\nkind: ServerPolicy\nmetadata: {{name: payments, namespace: shop}}\nspec:\n  targetRef: {{kind: MeshService, name: payments}}\n{spec}"
    )
}

impl Payments {
    /// Calls the inbound port straight over mTLS as `identity` ("ns/sa"), with a
    /// certificate from the mesh's CA: a caller sidecar in all but the process.
    async fn call_as(&self, identity: &str, method: &str, path: &str) -> Reply {
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
        let server = SpiffeId::from_short("cluster.local", "shop/payments").expect("id");
        let connector = tls_client(Some(store), bundle, server);
        send_h2_tls(
            self.sidecar.inbound,
            &connector,
            method,
            "payments.shop",
            path,
        )
        .await
        .expect("an HTTP answer")
    }
}

fn assert_unauthorized(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 403, "{what}: {}", reply.body);
    assert_eq!(reply.mesh_error(), Some("unauthorized"), "{what}");
    assert_eq!(reply.json()["error"], "unauthorized", "{what}");
}

fn assert_allowed(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 200, "{what}: {}", reply.body);
    assert_eq!(reply.mesh_error(), None, "{what}");
}

const RULES: &str = "  authorization:
    default: deny
    rules:
      - from: [\"spiffe://cluster.local/ns/shop/sa/orders\"]
        match: {pathPrefix: /orders, methods: [GET, POST]}
      - from: [\"spiffe://cluster.local/ns/ops/sa/*\"]
        match: {methods: [GET]}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_allow_by_identity_glob_path_and_method() {
    let payments = payments(RULES).await;
    let mesh = &payments.mesh;
    let orders = mesh
        .sidecar("orders", "shop/orders", None, free_port())
        .await;
    let evil = mesh.sidecar("evil", "shop/evil", None, free_port()).await;

    // Through the caller's sidecar: the allowed identity, on its paths and methods.
    let mut client = Http1::connect(orders.outbound).await.unwrap();
    let reply = client.get("payments.shop", "/orders/1", &[]).await.unwrap();
    assert_allowed(&reply, "orders GET /orders/1");
    assert_eq!(reply.json()["client_id"], ORDERS);
    let reply = client.send("POST", "payments.shop", "/orders", &[]).await;
    assert_allowed(&reply.unwrap(), "orders POST /orders");
    let reply = client
        .send("DELETE", "payments.shop", "/orders/1", &[])
        .await;
    assert_unauthorized(&reply.unwrap(), "orders DELETE: method not allowed");
    let reply = client.get("payments.shop", "/admin", &[]).await;
    assert_unauthorized(&reply.unwrap(), "orders GET /admin: path not allowed");
    let reply = client.get("payments.shop", "/ordersx", &[]).await;
    assert_unauthorized(&reply.unwrap(), "a prefix matches whole segments");

    // Another identity of the mesh: refused whatever it asks.
    let reply = get_h1(evil.outbound, "payments.shop", "/orders/1").await;
    assert_unauthorized(&reply.unwrap(), "shop/evil");

    // The glob: any service account of ns/ops, GET only; not a look-alike namespace.
    let reply = payments.call_as("ops/monitor", "GET", "/admin").await;
    assert_allowed(&reply, "ops/monitor GET");
    let reply = payments.call_as("ops/backup", "GET", "/orders").await;
    assert_allowed(&reply, "ops/backup GET");
    let reply = payments.call_as("ops/monitor", "POST", "/orders").await;
    assert_unauthorized(&reply, "ops/monitor POST");
    let reply = payments.call_as("opsx/monitor", "GET", "/").await;
    assert_unauthorized(&reply, "ns/opsx is not ns/ops");

    assert_eq!(
        payments.app.requests(),
        4,
        "only allowed requests reach the app"
    );
    let denied = payments
        .sidecar
        .metric_sum(
            "outrigger_requests_total",
            &[
                ("direction", "inbound"),
                ("service", "payments"),
                ("status_code", "403"),
                ("error", "unauthorized"),
            ],
        )
        .await;
    assert_eq!(denied, 6.0);

    // The log names the caller, the request and the rule that came closest.
    let log = payments.sidecar.process.log();
    let line = log
        .lines()
        .find(|l| l.contains("request denied") && l.contains("DELETE"))
        .unwrap_or_else(|| panic!("no denial logged:\n{log}"));
    assert!(
        line.contains(ORDERS) && line.contains("/orders/1") && line.contains("rules[0]"),
        "{line}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("request denied") && l.contains(EVIL)),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_allow_admits_callers_that_no_rule_names() {
    let payments = payments(
        "  authorization:
    default: allow
    rules:
      - from: [\"spiffe://cluster.local/ns/shop/sa/orders\"]
",
    )
    .await;
    let reply = payments.call_as("shop/evil", "DELETE", "/anything").await;
    assert_allowed(&reply, "default allow");
    assert_eq!(reply.json()["client_id"], EVIL);

    // Plaintext is still refused: mtls is strict unless it says otherwise.
    let plaintext = get_h1(payments.sidecar.inbound, "payments.shop", "/").await;
    assert!(
        plaintext.is_err(),
        "strict refuses plaintext: {plaintext:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissive_with_default_allow_admits_plaintext_callers_unauthenticated() {
    let payments = payments(
        "  mtls: permissive
  authorization:
    default: allow
",
    )
    .await;
    let inbound = payments.sidecar.inbound;
    let mut plain = Http1::connect(inbound).await.unwrap();
    let reply = plain
        .get("payments.shop", "/", &[("outrigger-client-id", ORDERS)])
        .await
        .unwrap();
    assert_allowed(&reply, "plaintext, permissive, default allow");
    let seen = reply.json();
    assert!(
        seen["client_id"].is_null(),
        "a plaintext caller has no identity, and a claimed one is removed: {seen}"
    );
    assert_eq!(seen["version"], "HTTP/1.1");

    // mTLS callers keep their identity.
    let reply = payments.call_as("shop/orders", "GET", "/").await;
    assert_allowed(&reply, "mTLS in permissive mode");
    assert_eq!(reply.json()["client_id"], ORDERS);
    assert_eq!(payments.app.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissive_with_default_deny_refuses_plaintext_with_403() {
    let payments = payments(
        "  mtls: permissive
  authorization:
    default: deny
    rules:
      - from: [\"spiffe://cluster.local/ns/shop/sa/orders\"]
",
    )
    .await;
    let reply = get_h1(payments.sidecar.inbound, "payments.shop", "/")
        .await
        .expect("permissive mode answers plaintext");
    assert_unauthorized(&reply, "plaintext, default deny");

    let reply = payments.call_as("shop/orders", "GET", "/").await;
    assert_allowed(&reply, "orders over mTLS");
    assert_eq!(payments.app.requests(), 1);
    let log = payments.sidecar.process.log();
    assert!(
        log.lines()
            .any(|l| l.contains("request denied") && l.contains("unauthenticated")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mtls_mode_changes_live_for_new_connections() {
    let payments = payments("  mtls: strict\n  authorization: {default: allow}\n").await;
    let inbound = payments.sidecar.inbound;
    let plaintext = get_h1(inbound, "payments.shop", "/").await;
    assert!(
        plaintext.is_err(),
        "strict refuses plaintext: {plaintext:?}"
    );

    payments.mesh.write_policy(
        "server-policy.yaml",
        &server_policy("  mtls: permissive\n  authorization: {default: allow}\n"),
    );
    eventually(
        "plaintext accepted once permissive",
        START_LIMIT,
        || async move {
            matches!(get_h1(inbound, "payments.shop", "/").await, Ok(r) if r.status == 200)
        },
    )
    .await;
    let reply = payments.call_as("shop/orders", "GET", "/").await;
    assert_allowed(&reply, "mTLS still accepted");
}
