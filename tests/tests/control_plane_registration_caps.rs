//! Registrations past what one service and one identity may hold, over real mTLS to the
//! real binary: refused with 429 and the API's error body, counted, logged a little (the
//! refusal log is throttled), with memory bounded and the control plane still serving.

use http::StatusCode;
use outrigger_api::{Heartbeat, Instance};
use outrigger_tests::{
    ControlPlane, KeepAlive, Mesh, WatchStream, call, control_plane_tls, enroll, id,
};

fn beat(proxy: &str, address: &str) -> String {
    serde_json::to_string(&Heartbeat {
        proxy_id: proxy.into(),
        applied_version: 0,
        instance: Some(Instance {
            service: "payments".into(),
            namespace: "shop".into(),
            address: address.into(),
            healthy: true,
        }),
    })
    .unwrap()
}

/// A distinct address for instance `n`.
fn address(n: usize) -> String {
    format!("10.{}.{}.{}:4143", (n >> 16) & 255, (n >> 8) & 255, n & 255)
}

const ATTEMPTS: usize = 10_000;
const DEFAULT_CAP: usize = 1_000;

#[tokio::test]
async fn ten_thousand_registrations_for_one_service_stop_at_its_cap() {
    let mesh = Mesh::with_payments();
    // Registrations that outlive the test: none expires to make room meanwhile.
    let cp = ControlPlane::start_with(&mesh, &["--registration-ttl", "10m"]).await;
    let anchor = mesh.anchor_pem();
    let payments = enroll(
        &cp,
        &anchor,
        &mesh.token("shop/payments"),
        &id("shop/payments"),
    )
    .await;
    let rss_before = cp.rss_kib();
    // One connection, as a sidecar's heartbeats go.
    let mut api =
        KeepAlive::connect(cp.api, control_plane_tls(&anchor, Some(payments.certs))).await;
    let (mut accepted, mut refused) = (0, 0);
    for n in 0..ATTEMPTS {
        let (status, text) = api
            .call("POST", "/v1/register", beat(&format!("p-{n}"), &address(n)))
            .await;
        match status {
            StatusCode::OK => accepted += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                refused += 1;
                let json: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert_eq!(json["error"], "too-many-instances");
                if refused == 1 {
                    assert!(
                        json["message"].as_str().unwrap().contains(
                            "MeshService shop/payments already has 1000 registered instances"
                        ),
                        "{json}"
                    );
                }
            }
            other => panic!("registration {n}: {other} {text}"),
        }
    }
    let rss_after = cp.rss_kib();
    eprintln!(
        "MEASURED {ATTEMPTS} registrations: {accepted} accepted, {refused} refused; control plane RSS {rss_before} KiB before, {rss_after} KiB after"
    );
    assert_eq!(accepted, DEFAULT_CAP);
    assert_eq!(refused, ATTEMPTS - DEFAULT_CAP);
    assert_eq!(
        cp.metric("outrigger_control_plane_registered_instances")
            .await,
        DEFAULT_CAP as f64
    );
    assert_eq!(
        cp.metric("outrigger_control_plane_api_requests_refused_total{endpoint=\"register\",reason=\"too-many-instances\"}")
            .await,
        (ATTEMPTS - DEFAULT_CAP) as f64
    );
    // Every refusal counted; the log has a sample, not nine thousand lines.
    let lines = cp.log().matches("refused registration").count();
    assert!((1..=10).contains(&lines), "{lines} refusal lines");

    // Still serving: a registered instance renews, a watcher sees the thousand, a new
    // proxy gets its certificate.
    let (status, text) = api
        .call("POST", "/v1/register", beat("p-0", &address(0)))
        .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let orders = enroll(&cp, &anchor, &mesh.token("shop/orders"), &id("shop/orders")).await;
    let mut watch = WatchStream::open(&cp, &anchor, &orders, "/v1/watch").await;
    let state = watch.next().await;
    let payments = state
        .services
        .iter()
        .find(|s| s.name == "payments")
        .unwrap();
    assert_eq!(
        payments.endpoints.len(),
        DEFAULT_CAP + 1,
        "the static one too"
    );
}

#[tokio::test]
async fn proxy_ids_past_an_identitys_cap_are_refused_on_register_and_watch() {
    let mesh = Mesh::with_payments();
    let cp = ControlPlane::start_with(
        &mesh,
        &[
            "--max-proxies-per-identity",
            "50",
            "--max-instances-per-service",
            "10",
        ],
    )
    .await;
    let anchor = mesh.anchor_pem();
    let payments = enroll(
        &cp,
        &anchor,
        &mesh.token("shop/payments"),
        &id("shop/payments"),
    )
    .await;
    let tls = || control_plane_tls(&anchor, Some(payments.certs.clone()));
    let mut api = KeepAlive::connect(cp.api, tls()).await;
    let mut codes = Vec::new();
    for n in 0..100 {
        let (status, text) = api
            .call("POST", "/v1/register", beat(&format!("p-{n}"), &address(n)))
            .await;
        let error = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|json| json["error"].as_str().map(str::to_string))
            .unwrap_or_default();
        codes.push((status.as_u16(), error));
    }
    let count = |status: u16, error: &str| {
        codes
            .iter()
            .filter(|(s, e)| *s == status && e == error)
            .count()
    };
    assert_eq!(count(200, ""), 10);
    assert_eq!(count(429, "too-many-instances"), 40);
    assert_eq!(count(429, "too-many-proxies"), 50);

    // A watch under a new proxy id is refused too; under a known one, or none, it opens.
    let (status, text) = call(cp.api, tls(), "GET", "/v1/watch?proxy=new-one", None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{text}");
    assert!(text.contains("\"too-many-proxies\""), "{text}");
    assert!(text.contains("--max-proxies-per-identity"), "{text}");
    let mut known = WatchStream::open(&cp, &anchor, &payments, "/v1/watch?proxy=p-3").await;
    known.next().await;
    let mut anonymous = WatchStream::open(&cp, &anchor, &payments, "/v1/watch").await;
    anonymous.next().await;
    assert_eq!(
        cp.metric("outrigger_control_plane_api_requests_refused_total{endpoint=\"watch\",reason=\"too-many-proxies\"}")
            .await,
        1.0
    );
    // Another identity has its own room.
    let orders = enroll(&cp, &anchor, &mesh.token("shop/orders"), &id("shop/orders")).await;
    let mut other = WatchStream::open(&cp, &anchor, &orders, "/v1/watch?proxy=o-1").await;
    other.next().await;
}
