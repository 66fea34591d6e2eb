//! The watchers feed the index: recorded lists and watch events in, snapshots out,
//! compared with what the file source makes of the same resources.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::mock_api::MockApi;
use crate::kubernetes::{ClusterFeed, ClusterHealth, WATCHED};
use crate::policy::{self, Policy};
use crate::reload::ConfigHealth;
use crate::snapshot::{MeshConfig, SnapshotPublisher};

/// A feed running against `mock`, publishing into its own publisher.
struct Running {
    feed: Arc<ClusterFeed>,
    publisher: SnapshotPublisher,
    health: Arc<ClusterHealth>,
    config_health: Arc<ConfigHealth>,
    _stop: watch::Sender<bool>,
}

fn start(mock: &MockApi) -> Running {
    let publisher = SnapshotPublisher::new(String::new(), Policy::default());
    let health = ClusterHealth::new(&WATCHED);
    let config_health = Arc::new(ConfigHealth::default());
    let (feed, changes) = ClusterFeed::new(
        "cluster.local",
        publisher.clone(),
        config_health.clone(),
        health.clone(),
    );
    let (stop, stopping) = watch::channel(false);
    tokio::spawn(feed.clone().run(mock.client(), changes, stopping));
    Running {
        feed,
        publisher,
        health,
        config_health,
        _stop: stop,
    }
}

/// The first published config that satisfies `done` (fails after 10s, which only a
/// bug takes: each step here takes milliseconds).
async fn published(running: &Running, done: impl Fn(&MeshConfig) -> bool) -> Arc<MeshConfig> {
    let mut configs = running.publisher.subscribe();
    let wait = async {
        loop {
            let config = configs.borrow_and_update().clone();
            if done(&config) {
                return config;
            }
            configs.changed().await.expect("the publisher lives");
        }
    };
    match tokio::time::timeout(Duration::from_secs(10), wait).await {
        Ok(config) => config,
        Err(_) => panic!(
            "never published; last: {:#?}\nhealth: {:?}\nerrors: {:?}",
            running.publisher.current().services,
            running.health.problems(),
            running.config_health.errors()
        ),
    }
}

fn endpoints(config: &MeshConfig, name: &str) -> Vec<String> {
    config
        .services
        .iter()
        .find(|s| s.name == name)
        .map(|s| s.endpoints.iter().map(|e| e.address.clone()).collect())
        .unwrap_or_default()
}

fn file_source(text: &str) -> Policy {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), text).unwrap();
    policy::load_dir(dir.path(), "cluster.local").unwrap()
}

#[tokio::test]
async fn the_crds_make_the_same_snapshot_as_the_same_files() {
    let mock = MockApi::from_fixtures(Some("shop"));
    let running = start(&mock);
    let config = published(&running, |c| !c.services.is_empty()).await;
    assert!(
        running.health.problems().is_empty(),
        "{:?}",
        running.health.problems()
    );

    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../k8s/examples/shop/mesh.yaml");
    let files = file_source(&std::fs::read_to_string(example).unwrap());
    let from_files = SnapshotPublisher::new(String::new(), files).current();
    assert_eq!(config.services, from_files.services);
    assert_eq!(config.server_policies, from_files.server_policies);
    assert_eq!(config.services.len(), 3);
    assert_eq!(config.server_policies.len(), 3);
}

/// The pods of `shop/payments` (service account `payments`, with the sidecar) behind
/// its Service, then: a slice modified and one added, a 410 Gone and a re-list that
/// no longer has the pod that left meanwhile, and the Service deleted. kube-dns, whose
/// pod has no sidecar, never joins the mesh.
#[tokio::test]
async fn services_and_endpoint_slices_make_mesh_services_and_follow_their_events() {
    let mock = MockApi::from_fixtures(Some("discovery"));
    let running = start(&mock);
    let first = published(&running, |c| !c.services.is_empty()).await;
    let names: Vec<&str> = first.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["payments"], "kube-dns has no meshed pod");
    assert_eq!(
        endpoints(&first, "payments"),
        ["10.244.1.5:8080"],
        "pod b is not ready"
    );

    let files = file_source(
        "apiVersion: outrigger.dev/v1alpha1
kind: MeshService
metadata: {name: payments, namespace: shop}
spec:
  identity: spiffe://cluster.local/ns/shop/sa/payments
  addresses: [\"10.96.0.12:8080\"]
  endpoints: [{address: \"10.244.1.5:8080\"}]
",
    );
    assert_eq!(
        first.services,
        SnapshotPublisher::new(String::new(), files)
            .current()
            .services
    );

    // MODIFIED (b ready) and ADDED (a second slice, with c).
    mock.release("endpointslices");
    let all = ["10.244.1.5:8080", "10.244.2.7:8080", "10.244.3.9:8080"];
    let changed = published(&running, |c| endpoints(c, "payments") == all).await;
    // What status convergence will be measured against: the version that carries it.
    let carried = running
        .feed
        .published()
        .version_of(Path::new("Service shop/payments"));
    assert_eq!(carried, Some(changed.version));
    assert!(changed.version > first.version);

    // 410 Gone, then a re-list: a left and the second slice went while unwatched.
    mock.release("endpointslices");
    published(&running, |c| {
        endpoints(c, "payments") == ["10.244.2.7:8080"]
    })
    .await;
    let lists = mock
        .received()
        .iter()
        .filter(|r| {
            r.uri
                .starts_with("/apis/discovery.k8s.io/v1/endpointslices?")
                && !r.uri.contains("watch=true")
        })
        .count();
    assert_eq!(lists, 2, "the 410 made the watcher list again");

    // DELETED: the Service, so its pods are no service of the mesh any more.
    mock.release("services");
    published(&running, |c| c.services.is_empty()).await;
    assert!(
        running.health.problems().is_empty(),
        "{:?}",
        running.health.problems()
    );
}

/// A watch refused by RBAC and a CRD not installed: not ready, saying why, nothing
/// published; retried with backoff until they work (paused time: the backoff's
/// sleeps pass at once).
#[tokio::test(start_paused = true)]
async fn a_refused_watch_and_a_missing_crd_are_reasons_not_to_be_ready_until_they_work() {
    let mock = MockApi::from_fixtures(Some("refused"));
    let running = start(&mock);
    let version = running.publisher.current().version;
    let problems = loop {
        let problems = running.health.problems();
        if problems
            .iter()
            .filter(|p| !p.ends_with("not listed yet"))
            .count()
            == 2
        {
            break problems;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let text = problems.join("\n");
    assert!(
        text.contains("watching meshservices.outrigger.dev: the API server does not serve meshservices.outrigger.dev: is its CRD installed?"),
        "{text}"
    );
    assert!(text.contains("watching pods: forbidden by RBAC"), "{text}");
    assert!(
        text.contains("cannot list resource"),
        "the API server's message: {text}"
    );
    assert_eq!(
        running.publisher.current().version,
        version,
        "nothing published"
    );

    // The second answers are lists: after the backoff, both watches work.
    while !running.health.problems().is_empty() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(running.health.all_synced());
}
