//! The control plane under abuse, over real TLS to the real binary: many watchers, more
//! connections than allowed, a watcher that never reads, huge bodies, CSRs for keys it
//! will not sign, and bad tokens. Each case ends in a clean refusal (the API's error
//! body) or a closed connection, a metric or log line saying so, and the control plane
//! still serving a normal client afterwards. The limits are docs/control-plane-limits.md's.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::StatusCode;
use outrigger_certs::{Ca, CertStore, WorkloadKey};
use outrigger_control_plane::TokenKey;
use outrigger_tests::{
    ControlPlane, Mesh, RawApi, START_LIMIT, WatchStream, Workload, control_plane_tls, enroll,
    eventually, fixtures_dir, id, request_certificate, request_head, status_and_body,
};
use tokio::io::AsyncWriteExt as _;

/// A certificate for `short` from the mesh's CA, for a key of its own: what `enroll`
/// gives, without a round trip per watcher.
fn local_workload(ca: &Ca, short: &str) -> Workload {
    let key = WorkloadKey::generate().unwrap();
    let csr = key.csr_pem_without_identity().unwrap();
    let issued = ca
        .sign_csr(&csr, &id(short), Duration::from_secs(3600))
        .unwrap();
    let certs = CertStore::new();
    certs.set(key.certified_key(issued.chain).unwrap());
    Workload {
        certs,
        chain_pem: issued.chain_pem,
    }
}

/// A normal client is still served: a bootstrap token gets a certificate.
async fn still_serves(cp: &ControlPlane, mesh: &Mesh) {
    let short = "shop/checker";
    let workload = enroll(cp, &mesh.anchor_pem(), &mesh.token(short), &id(short)).await;
    assert!(!workload.chain_pem.is_empty());
}

const WATCHERS: usize = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_watchers_each_with_its_own_certificate() {
    // This test holds a thousand connections too.
    outrigger_control_plane::open_files::raise_to_hard_limit().unwrap();
    let mesh = Mesh::with_payments();
    // As a shell with `ulimit -Sn 512` would start it: a thousand connections need more.
    let cp = ControlPlane::start_with_open_files(&mesh, 512, &[]).await;
    let (soft, hard) = cp.open_files_limits();
    assert_eq!(soft, hard, "the soft limit is raised to the hard one");
    assert!(
        cp.log().contains("raised the open-file limit"),
        "{}",
        cp.log()
    );
    let rss_before = cp.rss_kib();

    let ca = Arc::new(Ca::load(&mesh.data_dir()).unwrap());
    let anchor = Arc::new(mesh.anchor_pem());
    let api = cp.api;
    let mut opening = tokio::task::JoinSet::new();
    for n in 0..WATCHERS {
        let (ca, anchor) = (ca.clone(), anchor.clone());
        opening.spawn(async move {
            // Ten identities, a hundred proxies each, every one with its own key.
            let workload = local_workload(&ca, &format!("load/sa-{}", n % 10));
            let path = format!("/v1/watch?proxy=w-{n}");
            let mut watch = WatchStream::open_on(api, &anchor, &workload, &path).await;
            watch.next().await;
            watch
        });
    }
    let mut watchers = opening.join_all().await;
    assert_eq!(watchers.len(), WATCHERS);
    assert_eq!(
        cp.metric("outrigger_control_plane_watchers").await,
        WATCHERS as f64
    );
    assert!(cp.open_files() > 512 + 100, "{} files", cp.open_files());
    let rss_watching = cp.rss_kib();
    eprintln!(
        "MEASURED control plane RSS: {rss_before} KiB idle, {rss_watching} KiB with {WATCHERS} watchers ({} KiB each); {} open files",
        (rss_watching.saturating_sub(rss_before)) / WATCHERS as u64,
        cp.open_files()
    );

    // Still serving: a new proxy gets a certificate, and a change reaches every watcher.
    still_serves(&cp, &mesh).await;
    let version = watchers[0].held().version;
    mesh.add_service(
        "shop",
        "orders",
        "shop/orders",
        &["127.0.0.1:14144".parse().unwrap()],
    );
    for watch in &mut watchers {
        let state = watch.next().await;
        assert!(state.version > version);
        assert!(state.services.iter().any(|s| s.name == "orders"));
    }
    drop(watchers);
    eventually("every watcher gone", START_LIMIT, || async {
        cp.metric("outrigger_control_plane_watchers").await == 0.0
    })
    .await;
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once_and_the_open_ones_go_on() {
    let mesh = Mesh::with_payments();
    let cp = ControlPlane::start_with(&mesh, &["--max-connections", "8"]).await;
    let tls = || control_plane_tls(&mesh.anchor_pem(), None);
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(
            RawApi::connect(cp.api, tls())
                .await
                .expect("within the cap"),
        );
    }
    // The ninth is closed before its handshake completes.
    assert!(RawApi::connect(cp.api, tls()).await.is_err());
    assert!(RawApi::connect(cp.api, tls()).await.is_err());
    assert_eq!(
        cp.metric("outrigger_control_plane_api_connections_refused_total")
            .await,
        2.0
    );
    assert_eq!(
        cp.metric("outrigger_control_plane_api_connections").await,
        8.0
    );
    let log = cp.log();
    // One line per 10 s: two refusals in a row make one line (two on a machine so slow
    // that 10 s pass between them).
    let lines = log.matches("API connection closed at once").count();
    assert!((1..=2).contains(&lines), "{lines} lines: {log}");
    // The health port has its own room.
    assert_eq!(cp.get_plain("/ready").await.0, 200);
    // An open connection still works.
    let mut first = held.remove(0);
    first
        .send(&request_head(
            "GET",
            "/v1/nothing",
            &[("connection", "close".into())],
        ))
        .await
        .unwrap();
    let reply = first.read_to_close(START_LIMIT).await.expect("answered");
    assert_eq!(status_and_body(&reply).0, 404);
    drop(held);
    eventually("room again", START_LIMIT, || async {
        cp.metric("outrigger_control_plane_api_connections").await < 8.0
    })
    .await;
    still_serves(&cp, &mesh).await;
}

/// `count` MeshServices of eight endpoints each, whose ports say `round`: every rewrite
/// changes every service, so each line to a watcher is a few hundred KiB.
fn many_services(count: usize, round: usize) -> String {
    (0..count)
        .map(|i| {
            let endpoints: String = (0..8)
                .map(|e| {
                    format!(
                        "    - address: 10.{}.{}.{e}:{}\n",
                        i / 256,
                        i % 256,
                        1000 + round
                    )
                })
                .collect();
            format!(
                "apiVersion: outrigger.dev/v1alpha1\nkind: MeshService\nmetadata: {{name: s{i}, namespace: load}}\nspec:\n  identity: spiffe://cluster.local/ns/load/sa/s{i}\n  endpoints:\n{endpoints}"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_never_reads_is_cut_off_and_the_others_go_on() {
    const SERVICES: usize = 1_000;
    const MAX_ROUNDS: usize = 200;
    let mesh = Mesh::with_payments();
    mesh.write_policy("load.yaml", &many_services(SERVICES, 0));
    let cp = ControlPlane::start_with(
        &mesh,
        &["--watch-stall-timeout", "1s", "--registration-warmup", "0s"],
    )
    .await;
    let ca = Ca::load(&mesh.data_dir()).unwrap();
    let anchor = mesh.anchor_pem();
    let rss_before = cp.rss_kib();

    // Asks for the stream, and never reads a byte of it, with a small receive window.
    let slow = local_workload(&ca, "load/slow");
    let mut never_reads = RawApi::connect_with_receive_buffer(
        cp.api,
        control_plane_tls(&anchor, Some(slow.certs)),
        4096,
    )
    .await
    .unwrap();
    never_reads
        .send(&request_head("GET", "/v1/watch?proxy=slow", &[]))
        .await
        .unwrap();
    let reader = local_workload(&ca, "load/reader");
    let mut reads = WatchStream::open(&cp, &anchor, &reader, "/v1/watch?proxy=reader").await;
    reads.next().await;

    let stalled = "outrigger_control_plane_watchers_cut_total{reason=\"stalled\"}";
    let mut rounds = 0;
    while cp.metric(stalled).await == 0.0 {
        rounds += 1;
        assert!(rounds <= MAX_ROUNDS, "not cut after {MAX_ROUNDS} rewrites");
        mesh.write_policy("load.yaml", &many_services(SERVICES, rounds));
        // The reading watcher keeps up with every rewrite.
        let port = format!(":{}", 1000 + rounds);
        loop {
            let state = reads.next().await;
            let s0 = state.services.iter().find(|s| s.name == "s0").unwrap();
            if s0.endpoints[0].address.ends_with(&port) {
                break;
            }
        }
    }
    let rss_after = cp.rss_kib();
    eprintln!(
        "MEASURED slow watcher cut after {rounds} rewrites of {SERVICES} services; control plane RSS {rss_before} KiB before, {rss_after} KiB after"
    );
    // Its connection is closed: what was buffered drains, then the end.
    assert!(never_reads.read_to_close(START_LIMIT).await.is_some());
    assert!(
        cp.log().contains("watcher cut off: it stopped reading"),
        "{}",
        cp.log()
    );
    assert_eq!(cp.metric("outrigger_control_plane_watchers").await, 1.0);
    // The other watcher is still served.
    mesh.write_policy("load.yaml", &many_services(SERVICES, 0));
    reads.next().await;
    still_serves(&cp, &mesh).await;
}

const TEN_MIB: usize = 10 << 20;

#[tokio::test]
async fn ten_mib_bodies_get_413_at_once_on_every_endpoint_that_reads_one() {
    let mesh = Mesh::with_payments();
    let cp = ControlPlane::start(&mesh).await;
    let anchor = mesh.anchor_pem();
    let ca = Ca::load(&mesh.data_dir()).unwrap();
    let payments = local_workload(&ca, "shop/payments");
    // (endpoint, label, client certificate)
    let endpoints = [
        ("/v1/certificates", "certificates", None),
        ("/v1/register", "register", Some(payments.certs.clone())),
        ("/v1/stats", "stats", Some(payments.certs.clone())),
        ("/v1/admission", "admission", None),
    ];
    for (path, label, certs) in endpoints {
        let tls = || control_plane_tls(&anchor, certs.clone());

        // It says 10 MiB are coming, and sends none: refused from the head alone.
        let mut api = RawApi::connect(cp.api, tls()).await.unwrap();
        let head = request_head(
            "POST",
            path,
            &[
                ("content-type", "application/json".into()),
                ("content-length", TEN_MIB.to_string()),
            ],
        );
        api.send(&head).await.unwrap();
        let reply = api
            .read_to_close(START_LIMIT)
            .await
            .expect("answered and closed without the body");
        let (status, body) = status_and_body(&reply);
        assert_eq!(status, 413, "{path}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["error"], "payload-too-large", "{path}");

        // Chunked, so no length is known: read up to the limit, then refused.
        let api = RawApi::connect(cp.api, tls()).await.unwrap();
        let (mut read, mut write) = tokio::io::split(api.into_inner());
        let head = request_head(
            "POST",
            path,
            &[
                ("content-type", "application/json".into()),
                ("transfer-encoding", "chunked".into()),
            ],
        );
        let sending = tokio::spawn(async move {
            write.write_all(&head).await?;
            let chunk = [b'x'; 64 * 1024];
            for _ in 0..TEN_MIB / chunk.len() {
                write.write_all(b"10000\r\n").await?;
                write.write_all(&chunk).await?;
                write.write_all(b"\r\n").await?;
            }
            write.write_all(b"0\r\n\r\n").await?;
            write.flush().await
        });
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(
            START_LIMIT,
            tokio::io::AsyncReadExt::read_to_end(&mut read, &mut reply),
        )
        .await
        .expect("answered");
        let (status, _) = status_and_body(&reply);
        assert_eq!(status, 413, "{path}, chunked");
        // The server read up to its limit and closed: what the sender still had to write
        // failed, or went into socket buffers nobody will read.
        let _ = sending.await;

        let sample = format!(
            "outrigger_control_plane_api_requests_refused_total{{endpoint=\"{label}\",reason=\"payload-too-large\"}}"
        );
        assert_eq!(cp.metric(&sample).await, 2.0, "{sample}");
    }
    still_serves(&cp, &mesh).await;
}

#[tokio::test]
async fn csrs_for_keys_the_ca_does_not_sign_are_refused_before_any_costly_work() {
    let mesh = Mesh::with_payments();
    let cp = ControlPlane::start(&mesh).await;
    let tls = || control_plane_tls(&mesh.anchor_pem(), None);
    let token = mesh.token("shop/orders");

    // A real CSR for a real 16,384-bit RSA key (made once with openssl; tests/fixtures).
    let rsa = std::fs::read_to_string(fixtures_dir().join("rsa-16384.csr")).unwrap();
    let (status, json) = request_certificate(cp.api, tls(), &rsa, Some(&token)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert_eq!(json["error"], "invalid-csr");
    let message = json["message"].as_str().unwrap();
    assert!(
        message.contains("RSA key of 16384 bits is not accepted")
            && message.contains("2048 to 4096 bits"),
        "{message}"
    );

    // A curve the CA does not sign for, with a valid signature.
    let p521 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512).unwrap();
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&p521)
        .unwrap()
        .pem()
        .unwrap();
    let (status, json) = request_certificate(cp.api, tls(), &csr, Some(&token)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("elliptic curve 1.3.132.0.35 is not accepted"),
        "{json}"
    );

    // An algorithm nobody assigned (id-ecPublicKey's last arc changed): refused for its
    // key even without a token, so before the proof is looked at, let alone a signature.
    let sidecar_csr = WorkloadKey::generate()
        .unwrap()
        .csr_pem_without_identity()
        .unwrap();
    let unknown = with_unknown_key_algorithm(&sidecar_csr);
    let (status, json) = request_certificate(cp.api, tls(), &unknown, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("key algorithm 1.2.840.10045.2.9 is not accepted"),
        "{json}"
    );

    assert_eq!(
        cp.metric(
            "outrigger_control_plane_certificate_requests_refused_total{reason=\"invalid-csr\"}"
        )
        .await,
        3.0
    );
    assert!(cp.log().contains("refused certificate request"));
    // The sidecar's own CSR still gets its certificate.
    let (status, json) = request_certificate(cp.api, tls(), &sidecar_csr, Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{json}");
}

/// The PEM CSR with its key's algorithm OID 1.2.840.10045.2.1 made 1.2.840.10045.2.9.
fn with_unknown_key_algorithm(pem: &str) -> String {
    use rustls_pki_types::CertificateSigningRequestDer;
    use rustls_pki_types::pem::PemObject as _;
    let mut der = CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec();
    let oid = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    let at = der.windows(oid.len()).position(|w| w == oid).unwrap();
    der[at + oid.len() - 1] = 0x09;
    outrigger_certs::der_to_pem("CERTIFICATE REQUEST", &der)
}

#[tokio::test]
async fn expired_foreign_and_other_identity_tokens_are_refused_with_the_reason() {
    let mesh = Mesh::with_payments();
    let cp = ControlPlane::start(&mesh).await;
    let tls = || control_plane_tls(&mesh.anchor_pem(), None);
    let key = TokenKey::load(&mesh.data_dir()).unwrap();
    let csr_for = |short: &str| {
        WorkloadKey::generate()
            .unwrap()
            .csr_pem(&id(short))
            .unwrap()
    };

    let expired = key.mint(
        &id("shop/orders"),
        SystemTime::now() - Duration::from_secs(3600),
    );
    let (status, json) =
        request_certificate(cp.api, tls(), &csr_for("shop/orders"), Some(&expired)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{json}");
    assert_eq!(json["error"], "unauthenticated");
    assert!(
        json["message"].as_str().unwrap().contains(
            "bootstrap token for spiffe://cluster.local/ns/shop/sa/orders expired 3600s ago"
        ),
        "{json}"
    );

    // A token for shop/orders, by a workload asking to be shop/payments.
    let orders = mesh.token("shop/orders");
    let (status, json) =
        request_certificate(cp.api, tls(), &csr_for("shop/payments"), Some(&orders)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{json}");
    assert_eq!(json["error"], "forbidden");
    assert!(
        json["message"].as_str().unwrap().contains(
            "the CSR asks for spiffe://cluster.local/ns/shop/sa/payments, but the bootstrap token is for spiffe://cluster.local/ns/shop/sa/orders"
        ),
        "{json}"
    );

    // A token signed by another control plane.
    let stranger = TokenKey::from_bytes(&[9; 32], "cluster.local").mint(
        &id("shop/orders"),
        SystemTime::now() + Duration::from_secs(600),
    );
    let (status, json) =
        request_certificate(cp.api, tls(), &csr_for("shop/orders"), Some(&stranger)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{json}");
    assert!(
        json["message"].as_str().unwrap().contains("signature"),
        "{json}"
    );

    let refused = |reason: &str| {
        format!("outrigger_control_plane_certificate_requests_refused_total{{reason=\"{reason}\"}}")
    };
    assert_eq!(cp.metric(&refused("unauthenticated")).await, 2.0);
    assert_eq!(cp.metric(&refused("forbidden")).await, 1.0);
    still_serves(&cp, &mesh).await;
}
