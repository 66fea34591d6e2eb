//! CRD status against the recorded API server: the counts of every replica summed and
//! applied to `/status` with the leader's version and generation, nothing written again
//! while nothing changes; and the other replicas found through the control plane's
//! EndpointSlices and asked over HTTP.

use http::Method;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::mock_api::{Answer, MockApi};
use crate::kubernetes::convergence::{
    CustomKind, CustomObject, ReplicaConvergence, ResourceConvergence,
};
use crate::kubernetes::peers::{Peer, Peers};
use crate::kubernetes::status_writer::{Round, StatusWriter};
use crate::policy::ServiceKey;

const MESH_SERVICE: &str = "/apis/outrigger.dev/v1alpha1/namespaces/shop/meshservices/payments";
const SERVER_POLICY: &str = "/apis/outrigger.dev/v1alpha1/namespaces/shop/serverpolicies/payments";

fn objects() -> Vec<CustomObject> {
    let object = |kind, name: &str, generation, target: Option<&str>| CustomObject {
        kind,
        namespace: "shop".into(),
        name: name.into(),
        generation: Some(generation),
        target: target.map(Into::into),
    };
    vec![
        object(CustomKind::MeshService, "payments", 3, None),
        object(
            CustomKind::ServerPolicy,
            "payments",
            1,
            Some("shop/payments"),
        ),
        // Not served (an error): no status is written for it.
        object(CustomKind::TrafficPolicy, "broken", 1, None),
    ]
}

fn report(replica: &str, entries: &[(&str, &str, u64, u32, u32)]) -> ReplicaConvergence {
    ReplicaConvergence {
        replica: replica.into(),
        resources: entries
            .iter()
            .map(|(name, digest, version, proxies, converged)| {
                let entry = ResourceConvergence {
                    digest: (*digest).into(),
                    version: *version,
                    proxies: *proxies,
                    converged: *converged,
                };
                ((*name).to_string(), entry)
            })
            .collect(),
    }
}

fn patches(mock: &MockApi) -> Vec<(String, serde_json::Value)> {
    mock.received()
        .into_iter()
        .filter(|r| r.method == Method::PATCH)
        .map(|r| (r.uri, serde_json::from_str(&r.body).unwrap()))
        .collect()
}

fn endpoints(key: &ServiceKey) -> Option<u32> {
    (key == &ServiceKey::new("shop", "payments")).then_some(2)
}

#[tokio::test]
async fn status_is_the_sum_over_replicas_and_is_written_only_when_it_changes() {
    let mock = MockApi::from_fixtures(None);
    let applied = |path: &str| {
        Answer::json(
            200,
            format!(
                r#"{{"apiVersion": "outrigger.dev/v1alpha1", "kind": "X", "metadata": {{"name": "payments", "namespace": "shop"}}, "spec": {{}}, "selfLink": "{path}"}}"#
            ),
        )
    };
    mock.on(
        Method::PATCH,
        &format!("{MESH_SERVICE}/status"),
        vec![applied(MESH_SERVICE)],
    );
    mock.on(
        Method::PATCH,
        &format!("{SERVER_POLICY}/status"),
        vec![applied(SERVER_POLICY)],
    );
    let mut writer = StatusWriter::new(mock.client());
    let mine = report(
        "cp-a",
        &[
            ("MeshService shop/payments", "ms", 100, 2, 1),
            ("ServerPolicy shop/payments", "sp", 101, 1, 1),
        ],
    );
    // cp-b serves the same MeshService, but not yet the latest ServerPolicy edit.
    let behind = report(
        "cp-b",
        &[
            ("MeshService shop/payments", "ms", 7, 3, 3),
            ("ServerPolicy shop/payments", "sp-old", 8, 2, 2),
        ],
    );

    let round = writer
        .write(&objects(), &mine, std::slice::from_ref(&behind), endpoints)
        .await;
    assert_eq!(
        round,
        Round {
            patched: 2,
            unchanged: 0,
            failed: 0
        }
    );
    let written = patches(&mock);
    let (uri, body) = &written[0];
    assert!(uri.starts_with(&format!("{MESH_SERVICE}/status?")), "{uri}");
    assert!(
        uri.contains("fieldManager=outrigger-control-plane") && uri.contains("force=true"),
        "server-side apply: {uri}"
    );
    assert_eq!(
        body,
        &serde_json::json!({
            "apiVersion": "outrigger.dev/v1alpha1",
            "kind": "MeshService",
            "status": {"version": 100, "observedGeneration": 3, "proxiesConverged": 4,
                       "proxies": 5, "converged": "4/5", "endpoints": 2}
        })
    );
    let (uri, body) = &written[1];
    assert!(
        uri.starts_with(&format!("{SERVER_POLICY}/status?")),
        "{uri}"
    );
    assert_eq!(
        body["status"],
        serde_json::json!({"version": 101, "observedGeneration": 1, "proxiesConverged": 1,
                           "proxies": 3, "converged": "1/3"}),
        "cp-b's two proxies are concerned but hold an older form"
    );

    // Nothing changed: nothing written.
    let round = writer
        .write(&objects(), &mine, std::slice::from_ref(&behind), endpoints)
        .await;
    assert_eq!(
        (round.patched, round.unchanged),
        (0, 2),
        "no write storm: {round:?}"
    );
    assert_eq!(patches(&mock).len(), 2);

    // cp-b catches up with the ServerPolicy: only that status is written.
    let caught_up = report(
        "cp-b",
        &[
            ("MeshService shop/payments", "ms", 7, 3, 3),
            ("ServerPolicy shop/payments", "sp", 9, 2, 2),
        ],
    );
    let round = writer
        .write(&objects(), &mine, &[caught_up], endpoints)
        .await;
    assert_eq!((round.patched, round.unchanged), (1, 1));
    let written = patches(&mock);
    assert_eq!(written.len(), 3);
    assert!(written[2].0.starts_with(SERVER_POLICY));
    assert_eq!(written[2].1["status"]["converged"], "3/3");
}

#[tokio::test]
async fn a_refused_status_write_is_counted_and_retried_next_round() {
    let mock = MockApi::from_fixtures(None);
    mock.on(
        Method::PATCH,
        &format!("{MESH_SERVICE}/status"),
        vec![
            Answer::json(
                403,
                r#"{"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "cannot patch meshservices/status", "reason": "Forbidden", "code": 403}"#,
            ),
            Answer::json(
                200,
                r#"{"apiVersion": "outrigger.dev/v1alpha1", "kind": "MeshService", "metadata": {"name": "payments"}, "spec": {}}"#,
            ),
        ],
    );
    let mut writer = StatusWriter::new(mock.client());
    let mine = report("cp-a", &[("MeshService shop/payments", "ms", 100, 1, 1)]);
    let objects = &objects()[..1];
    let round = writer.write(objects, &mine, &[], endpoints).await;
    assert_eq!((round.patched, round.failed), (0, 1));
    let round = writer.write(objects, &mine, &[], endpoints).await;
    assert_eq!(
        (round.patched, round.failed),
        (1, 0),
        "not remembered as written"
    );
}

/// A replica's HTTP port that answers `/api/convergence` once with `report`.
async fn replica_serving(report: &ReplicaConvergence) -> (u16, tokio::task::JoinHandle<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = serde_json::to_string(report).unwrap();
    let served = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut request = vec![0; 4096];
        let n = tcp.read(&mut request).await.unwrap();
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        tcp.write_all(response.as_bytes()).await.unwrap();
        String::from_utf8_lossy(&request[..n]).into_owned()
    });
    (port, served)
}

#[tokio::test]
async fn the_other_replicas_are_found_by_endpoint_slice_and_asked_over_http() {
    let theirs = report("cp-b", &[("MeshService shop/payments", "ms", 7, 3, 3)]);
    let (port, served) = replica_serving(&theirs).await;
    let mock = MockApi::from_fixtures(None);
    let slice = serde_json::json!({
        "kind": "EndpointSliceList", "apiVersion": "discovery.k8s.io/v1",
        "metadata": {"resourceVersion": "77"},
        "items": [{
            "metadata": {"name": "outrigger-control-plane-x1", "namespace": "outrigger",
                         "labels": {"kubernetes.io/service-name": "outrigger-control-plane"}},
            "addressType": "IPv4",
            "ports": [{"name": "api", "port": 8443, "protocol": "TCP"},
                      {"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.1.0.5"], "conditions": {"ready": true},
                 "targetRef": {"kind": "Pod", "name": "cp-a", "namespace": "outrigger"}},
                {"addresses": ["127.0.0.1"], "conditions": {"ready": true},
                 "targetRef": {"kind": "Pod", "name": "cp-b", "namespace": "outrigger"}},
                {"addresses": ["10.1.0.9"], "conditions": {"ready": false, "serving": false, "terminating": true},
                 "targetRef": {"kind": "Pod", "name": "cp-old", "namespace": "outrigger"}}
            ]
        }]
    });
    mock.on(
        Method::GET,
        "/apis/discovery.k8s.io/v1/namespaces/outrigger/endpointslices",
        vec![Answer::json(200, slice.to_string())],
    );
    let peers = Peers::new(
        mock.client(),
        "outrigger",
        "outrigger-control-plane",
        "cp-a",
    );
    assert_eq!(
        peers.list().await.unwrap(),
        [Peer {
            name: "cp-b".into(),
            http: format!("127.0.0.1:{port}")
        }],
        "itself and a terminating replica left out"
    );
    let listed = &mock.received()[0];
    assert!(
        listed
            .uri
            .contains("labelSelector=kubernetes.io%2Fservice-name%3Doutrigger-control-plane"),
        "{}",
        listed.uri
    );

    let reports = peers.reports().await;
    assert_eq!(reports, [theirs]);
    let request = served.await.unwrap();
    assert!(
        request.starts_with("GET /api/convergence HTTP/1.1\r\n"),
        "{request}"
    );
}

/// The whole path on one replica: the shop's CRDs through the feed, two proxies
/// connected (one behind), and the status loop, holding the Lease, writing each
/// resource's status with this replica's counts (no other replica answers).
#[tokio::test]
async fn the_holder_writes_the_counts_of_its_connected_proxies() {
    use std::sync::Arc;
    use std::time::Duration;

    use outrigger_certs::SpiffeId;
    use tokio::sync::watch;

    use crate::kubernetes::convergence::LocalConvergence;
    use crate::kubernetes::status_writer;
    use crate::kubernetes::{ClusterFeed, ClusterHealth, WATCHED};
    use crate::policy::Policy;
    use crate::proxies::{Proxies, Seen};
    use crate::reload::ConfigHealth;
    use crate::snapshot::SnapshotPublisher;

    let mock = MockApi::from_fixtures(Some("shop"));
    for path in [
        "meshservices/payments",
        "meshservices/orders",
        "meshservices/inventory",
        "trafficpolicies/payments",
        "trafficpolicies/inventory",
        "serverpolicies/payments",
        "serverpolicies/inventory",
        "serverpolicies/orders",
    ] {
        mock.on(
            Method::PATCH,
            &format!("/apis/outrigger.dev/v1alpha1/namespaces/shop/{path}/status"),
            vec![Answer::json(
                200,
                r#"{"apiVersion": "outrigger.dev/v1alpha1", "kind": "X", "metadata": {"name": "x"}, "spec": {}}"#,
            )],
        );
    }
    mock.on(
        Method::GET,
        "/apis/discovery.k8s.io/v1/namespaces/outrigger/endpointslices",
        vec![Answer::json(
            200,
            r#"{"kind": "EndpointSliceList", "apiVersion": "discovery.k8s.io/v1", "metadata": {}, "items": []}"#,
        )],
    );
    let publisher = SnapshotPublisher::new(String::new(), Policy::default());
    let (feed, changes) = ClusterFeed::new(
        "cluster.local",
        publisher.clone(),
        Arc::new(ConfigHealth::default()),
        ClusterHealth::new(&WATCHED),
    );
    let (stop, stopping) = watch::channel(false);
    tokio::spawn(feed.clone().run(mock.client(), changes, stopping.clone()));
    let mut configs = publisher.subscribe();
    let version = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let config = configs.borrow_and_update().clone();
            if !config.services.is_empty() {
                return config.version;
            }
            configs.changed().await.unwrap();
        }
    })
    .await
    .expect("the shop is published");

    let proxies = Proxies::new();
    fn seen<'a>(proxy_id: &'a str, identity: &'a SpiffeId) -> Seen<'a> {
        Seen {
            proxy_id,
            identity,
            peer: "10.0.0.1:40000".parse().unwrap(),
        }
    }
    let payments = &SpiffeId::from_short("cluster.local", "shop/payments").unwrap();
    let orders = &SpiffeId::from_short("cluster.local", "shop/orders").unwrap();
    let _p = proxies
        .watch_opened(
            seen("payments-1", payments),
            Some(ServiceKey::new("shop", "payments")),
        )
        .unwrap();
    proxies
        .heartbeat(seen("payments-1", payments), version, None)
        .unwrap();
    let _o = proxies
        .watch_opened(
            seen("orders-1", orders),
            Some(ServiceKey::new("shop", "orders")),
        )
        .unwrap();
    proxies
        .heartbeat(seen("orders-1", orders), version - 1, None)
        .unwrap();

    let local = Arc::new(LocalConvergence {
        replica: "cp-a".into(),
        feed: feed.clone(),
        proxies,
    });
    let (_leading, leadership) = watch::channel(true);
    tokio::spawn(status_writer::run(
        StatusWriter::new(mock.client()),
        local,
        Peers::new(
            mock.client(),
            "outrigger",
            "outrigger-control-plane",
            "cp-a",
        ),
        leadership,
        stopping,
    ));
    let written = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let written = patches(&mock);
            if written.len() >= 8 {
                return written;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("every resource's status written");
    let status_of = |path: &str| {
        written
            .iter()
            .find(|(uri, _)| uri.contains(path))
            .map(|(_, body)| body["status"].clone())
            .unwrap()
    };
    let mesh = status_of("/meshservices/payments/status");
    assert_eq!(mesh["version"], version);
    assert_eq!(mesh["observedGeneration"], 1);
    assert_eq!(mesh["converged"], "1/2", "orders-1 is one version behind");
    assert_eq!(written.len(), 8, "once each: {written:#?}");
    let server = status_of("/serverpolicies/payments/status");
    assert_eq!(
        (&server["proxies"], &server["proxiesConverged"]),
        (&serde_json::json!(1), &serde_json::json!(1)),
        "only payments' proxy gets payments' ServerPolicy"
    );
    stop.send(true).unwrap();
}
