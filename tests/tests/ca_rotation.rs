//! Trust-anchor rotation with the real binary: `outrigger ca rotate start|issuer|finish`
//! against one running control plane, never restarted, seen through its API.

use std::time::Duration;

use http::StatusCode;
use outrigger_api::WatchEvent;
use outrigger_certs::{WorkloadKey, certs_from_pem};
use outrigger_tests::{
    ControlPlane, Mesh, WatchStream, control_plane_tls, enroll, id, path, request_certificate, run,
    stderr, the_error_line,
};

/// A fresh certificate for shop/orders, asked with a token over TLS that trusts `bundle`:
/// (the chain's DER, the bundle in the response).
async fn fresh_certificate(cp: &ControlPlane, bundle: &str, token: &str) -> (Vec<Vec<u8>>, String) {
    let key = WorkloadKey::generate().unwrap();
    let csr = key.csr_pem(&id("shop/orders")).unwrap();
    let (status, json) =
        request_certificate(cp.api, control_plane_tls(bundle, None), &csr, Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{json}\n{}", cp.log());
    let chain = certs_from_pem(json["certificate_chain"].as_str().unwrap())
        .unwrap()
        .into_iter()
        .map(|c| c.to_vec())
        .collect();
    (chain, json["trust_bundle"].as_str().unwrap().to_string())
}

fn anchors(bundle: &str) -> Vec<Vec<u8>> {
    certs_from_pem(bundle)
        .unwrap()
        .into_iter()
        .map(|c| c.to_vec())
        .collect()
}

fn der_of(file: &std::path::Path) -> Vec<u8> {
    certs_from_pem(&std::fs::read_to_string(file).unwrap()).unwrap()[0].to_vec()
}

/// Polls `fresh_certificate` until `done` holds for it; panics after 30s.
async fn until_certificate(
    cp: &ControlPlane,
    bundle: &str,
    token: &str,
    what: &str,
    done: impl Fn(&[Vec<u8>], &str) -> bool,
) -> (Vec<Vec<u8>>, String) {
    for _ in 0..300 {
        let (chain, got) = fresh_certificate(cp, bundle, token).await;
        if done(&chain, &got) {
            return (chain, got);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}:\n{}", cp.log());
}

#[tokio::test]
async fn the_anchor_rotates_in_three_steps_without_a_restart() {
    let mesh = Mesh::with_payments();
    let cp = ControlPlane::start(&mesh).await;
    let data = path(&mesh.data_dir()).to_string();
    let old_anchor = mesh.anchor_pem();
    let token = mesh.token("shop/orders");
    let workload = enroll(&cp, &old_anchor, &token, &id("shop/orders")).await;
    let mut watch =
        WatchStream::open(&cp, &old_anchor, &workload, "/v1/watch?proxy=orders-1").await;
    assert!(matches!(watch.next_event().await.0, WatchEvent::Full(_)));
    let (_, bundle) = fresh_certificate(&cp, &old_anchor, &token).await;
    assert_eq!(anchors(&bundle).len(), 1);

    // 1. start: the bundle holds the old and the next anchor, on the watch and in
    // certificate responses.
    let out = run("outrigger", &["ca", "rotate", "start", "--data-dir", &data]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(said.contains("next: "), "{said}");
    let next_anchor = der_of(&mesh.data_dir().join("ca/next/trust-anchor.pem"));
    let WatchEvent::Delta(delta) = watch.next_event().await.0 else {
        panic!("a delta");
    };
    let pushed = delta.trust_bundle.expect("the new bundle is pushed");
    assert_eq!(
        anchors(&pushed),
        [
            der_of(&mesh.data_dir().join("ca/trust-anchor.pem")),
            next_anchor.clone()
        ]
    );
    let (chain, bundle) = until_certificate(&cp, &old_anchor, &token, "two anchors", |_, b| {
        anchors(b).len() == 2
    })
    .await;
    assert_eq!(bundle, pushed);
    assert_ne!(
        chain[1],
        der_of(&mesh.data_dir().join("ca/next/issuer.pem")),
        "old issuer still signs"
    );
    let again = run("outrigger", &["ca", "rotate", "start", "--data-dir", &data]);
    assert!(the_error_line(&again).contains("already under way"));

    // 2. issuer: new certificates chain to the next anchor, and so does the control
    // plane's own (a client trusting only the next anchor reaches it).
    let out = run(
        "outrigger",
        &["ca", "rotate", "issuer", "--data-dir", &data],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let next_issuer = der_of(&mesh.data_dir().join("ca/next/issuer.pem"));
    let (chain, _) = until_certificate(&cp, &pushed, &token, "the next issuer", |c, _| {
        c[1] == next_issuer
    })
    .await;
    assert_eq!(chain.len(), 2);
    let next_anchor_pem =
        std::fs::read_to_string(mesh.data_dir().join("ca/next/trust-anchor.pem")).unwrap();
    // Retried: the serving certificate is re-issued a moment after the issuer moves (a
    // handshake that fails panics inside the spawned task, which is the retry signal).
    let mut served_under_next = false;
    for _ in 0..300 {
        let key = WorkloadKey::generate().unwrap();
        let csr = key.csr_pem(&id("shop/orders")).unwrap();
        let attempt = tokio::spawn({
            let (api, tls) = (cp.api, control_plane_tls(&next_anchor_pem, None));
            let token = token.clone();
            async move { request_certificate(api, tls, &csr, Some(&token)).await }
        });
        if matches!(attempt.await, Ok((StatusCode::OK, _))) {
            served_under_next = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        served_under_next,
        "the control plane serves under the next anchor:\n{}",
        cp.log()
    );

    // 3. finish: refused while old certificates may be valid, then forced.
    let out = run(
        "outrigger",
        &["ca", "rotate", "finish", "--data-dir", &data],
    );
    let line = the_error_line(&out);
    assert!(line.contains("--force"), "{line}");
    let out = run(
        "outrigger",
        &["ca", "rotate", "finish", "--data-dir", &data, "--force"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!mesh.data_dir().join("ca/next").exists());
    assert_eq!(mesh.anchor_pem(), next_anchor_pem);
    let (chain, bundle) = until_certificate(&cp, &next_anchor_pem, &token, "one anchor", |_, b| {
        anchors(b).len() == 1
    })
    .await;
    let next_anchor_der = next_anchor;
    assert_eq!(anchors(&bundle), std::slice::from_ref(&next_anchor_der));
    assert_eq!(chain[1], next_issuer);
    // Moving the issuer changed no bundle: the next line is finish's.
    let WatchEvent::Delta(delta) = watch.next_event().await.0 else {
        panic!("a delta");
    };
    assert_eq!(
        anchors(&delta.trust_bundle.expect("a bundle")),
        [next_anchor_der]
    );
    // The same process all along.
    assert!(
        cp.log().matches("control plane ready").count() == 1,
        "{}",
        cp.log()
    );
}
