//! `POST /v1/certificates` over real TLS: who gets which identity, and every refusal.

use std::time::{Duration, SystemTime};

use http::StatusCode;
use outrigger_certs::{ClientIdVerifier, TrustBundle, WorkloadKey, certs_from_pem};
use outrigger_control_plane::TokenKey;
use outrigger_tests::{
    ControlPlane, Mesh, RawApi, START_LIMIT, call, control_plane_tls, enroll, id, identity_of,
    request_certificate, request_head, status_and_body,
};
use rustls::pki_types::UnixTime;
use rustls::server::danger::ClientCertVerifier as _;

fn csr_for(short: &str) -> String {
    WorkloadKey::generate()
        .unwrap()
        .csr_pem(&id(short))
        .unwrap()
}

#[tokio::test]
async fn the_token_decides_the_identity_not_the_csr() {
    let mesh = Mesh::with_payments();
    let cp = ControlPlane::start(&mesh).await;
    let token = mesh.token("ns/a");
    let tls = || control_plane_tls(&mesh.anchor_pem(), None);

    // A CSR asking for a DNS name, and for the token's own identity: the DNS name does
    // not end up in the certificate.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr_asking = |identity: &str| {
        let mut params = rcgen::CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
        params.subject_alt_names.push(rcgen::SanType::URI(
            id(identity).as_str().try_into().unwrap(),
        ));
        params.serialize_request(&key).unwrap().pem().unwrap()
    };

    let (status, json) =
        request_certificate(cp.api, tls(), &csr_asking("ns/a"), Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let chain_pem = json["certificate_chain"].as_str().unwrap();
    assert_eq!(identity_of(chain_pem), id("ns/a"));
    let leaf = &certs_from_pem(chain_pem).unwrap()[0];
    let asked = b"evil.example";
    assert!(
        !leaf.windows(asked.len()).any(|w| w == asked),
        "no DNS SAN from the CSR"
    );
    assert_eq!(json["trust_bundle"].as_str().unwrap(), mesh.anchor_pem());
    let expires_at = json["expires_at"].as_i64().unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        expires_at > now && expires_at <= now + 24 * 3600 + 60,
        "{expires_at}"
    );

    // A CSR asking for another identity than the token's is refused, and says why.
    let (status, json) =
        request_certificate(cp.api, tls(), &csr_asking("ns/b"), Some(&token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{json}");
    assert_eq!(json["error"], "forbidden");
    let message = json["message"].as_str().unwrap();
    assert!(
        message.contains("asks for spiffe://cluster.local/ns/ns/sa/b")
            && message.contains("bootstrap token is for spiffe://cluster.local/ns/ns/sa/a"),
        "{message}"
    );

    let (_, metrics) = cp.get_plain("/metrics").await;
    assert!(
        metrics
            .contains("outrigger_control_plane_certificates_issued_total{proven_by=\"token\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("certificate_requests_refused_total{reason=\"forbidden\"} 1\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn bad_proofs_and_bad_requests_are_refused_with_reasons() {
    let mesh = Mesh::with_payments();
    let cp = ControlPlane::start(&mesh).await;
    let tls = || control_plane_tls(&mesh.anchor_pem(), None);
    let key = TokenKey::load(&mesh.data_dir()).unwrap();

    let expired = key.mint(&id("ns/a"), SystemTime::now() - Duration::from_secs(120));
    let (status, json) = request_certificate(cp.api, tls(), &csr_for("ns/a"), Some(&expired)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json["error"], "unauthenticated");
    assert!(
        json["message"].as_str().unwrap().contains("expired"),
        "{json}"
    );

    // The payload claims another identity; the signature is the original's.
    let good = mesh.token("ns/a");
    let admin = key.mint(&id("ns/admin"), SystemTime::now() + Duration::from_secs(60));
    let mut parts: Vec<&str> = good.split('.').collect();
    parts[1] = admin.split('.').nth(1).unwrap();
    let forged = parts.join(".");
    let (status, json) =
        request_certificate(cp.api, tls(), &csr_for("ns/admin"), Some(&forged)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        json["message"].as_str().unwrap().contains("signature"),
        "{json}"
    );

    let (status, json) = request_certificate(cp.api, tls(), &csr_for("ns/a"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        json["message"].as_str().unwrap().contains("token"),
        "{json}"
    );

    let (status, json) = request_certificate(cp.api, tls(), "not a CSR", Some(&good)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json["error"], "invalid-csr");

    let (status, text) = call(
        cp.api,
        tls(),
        "POST",
        "/v1/certificates",
        Some("{\"csr\":1".into()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("\"bad-request\""), "{text}");

    // Too large: refused from its Content-Length, before the body is read, and the
    // connection closed (a client still writing the body may see a reset instead of the
    // answer, so this one sends the head alone).
    let mut raw = RawApi::connect(cp.api, tls()).await.unwrap();
    raw.send(&request_head(
        "POST",
        "/v1/certificates",
        &[("content-length", "70000".into())],
    ))
    .await
    .unwrap();
    let reply = raw.read_to_close(START_LIMIT).await.expect("answered");
    let (status, text) = status_and_body(&reply);
    assert_eq!(status, 413, "{text}");

    let (status, _) = call(cp.api, tls(), "GET", "/v1/certificates", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _) = call(cp.api, tls(), "GET", "/v2/nothing", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (_, metrics) = cp.get_plain("/metrics").await;
    assert!(
        metrics.contains("certificate_requests_refused_total{reason=\"unauthenticated\"} 3\n"),
        "{metrics}"
    );
    assert!(cp.log().contains("refused certificate request"));
}

#[tokio::test]
async fn renewal_over_mtls_keeps_the_identity_and_ignores_a_token() {
    let mesh = Mesh::with_payments();
    let cp = ControlPlane::start(&mesh).await;
    let anchor = mesh.anchor_pem();
    let workload = enroll(&cp, &anchor, &mesh.token("shop/orders"), &id("shop/orders")).await;
    let renew = |csr: String| {
        let tls = control_plane_tls(&anchor, Some(workload.certs.clone()));
        let other = mesh.token("shop/payments");
        async move { request_certificate(cp.api, tls, &csr, Some(&other)).await }
    };

    // A CSR naming no identity, as sidecars send: the certificate's identity, not the token's.
    let csr = WorkloadKey::generate()
        .unwrap()
        .csr_pem_without_identity()
        .unwrap();
    let (status, json) = renew(csr).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let renewed = json["certificate_chain"].as_str().unwrap();
    assert_eq!(identity_of(renewed), id("shop/orders"));
    assert_ne!(renewed, workload.chain_pem);

    // Renewing as someone else is refused: a sidecar may only renew itself.
    let (status, json) = renew(csr_for("shop/payments")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{json}");
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("the certificate is for spiffe://cluster.local/ns/shop/sa/orders"),
        "{json}"
    );

    let (_, metrics) = cp.get_plain("/metrics").await;
    assert!(
        metrics.contains("certificates_issued_total{proven_by=\"certificate\"} 1\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_restart_keeps_the_ca() {
    let mesh = Mesh::with_payments();
    let anchor = mesh.anchor_pem();
    let mut first = ControlPlane::start(&mesh).await;
    let workload = enroll(
        &first,
        &anchor,
        &mesh.token("shop/orders"),
        &id("shop/orders"),
    )
    .await;
    assert!(first.terminate().success(), "{}", first.log());

    let second = ControlPlane::start(&mesh).await;
    // The old certificate still chains to the anchor file...
    let chain = certs_from_pem(&workload.chain_pem).unwrap();
    let verifier =
        ClientIdVerifier::required(TrustBundle::from_pem(&anchor).unwrap(), "cluster.local");
    verifier
        .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
        .expect("certificate from before the restart verifies");
    // ...the restarted control plane accepts it for renewal...
    let (status, json) = request_certificate(
        second.api,
        control_plane_tls(&anchor, Some(workload.certs.clone())),
        &csr_for("shop/orders"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(
        identity_of(json["certificate_chain"].as_str().unwrap()),
        id("shop/orders")
    );
    // ...and new enrolments work.
    enroll(
        &second,
        &anchor,
        &mesh.token("shop/payments"),
        &id("shop/payments"),
    )
    .await;
}
