//! Deltas: computed once per version by the publisher, composed per watcher.

use outrigger_api::{MtlsMode, Protocol, ServerPolicyUpdate, ServiceRef, SnapshotDelta};

use super::tests::{policy, server_policy, service};
use super::*;

fn payments() -> ServiceKey {
    ServiceKey::new("shop", "payments")
}

fn web_admin() -> ServiceKey {
    ServiceKey::new("shop", "web-admin")
}

fn reference(ns: &str, name: &str) -> ServiceRef {
    ServiceRef {
        namespace: ns.into(),
        name: name.into(),
    }
}

/// The delta a watcher serving `served` (the same service before and now) gets from `base`.
fn delta(publisher: &SnapshotPublisher, base: u64, served: Option<&ServiceKey>) -> Catchup {
    publisher.current().catch_up(base, served, served)
}

fn expect_delta(catchup: Catchup) -> SnapshotDelta {
    match catchup {
        Catchup::Delta(delta) => delta,
        other => panic!("expected a delta, got {other:?}"),
    }
}

#[test]
fn an_added_service_is_upserted_alone() {
    let publisher = SnapshotPublisher::new("pem".into(), policy());
    let base = publisher.current().version;
    let mut next = policy();
    next.services.push(service("zoo", "keeper", "keeper", &[]));
    publisher.publish_policy(next).unwrap();

    let delta = expect_delta(delta(&publisher, base, Some(&payments())));
    assert_eq!((delta.base, delta.version), (base, base + 1));
    assert_eq!(delta.upserted, [service("zoo", "keeper", "keeper", &[])]);
    assert!(delta.removed.is_empty());
    assert_eq!(delta.trust_bundle, None);
    assert_eq!(delta.server_policy, None);
}

#[test]
fn a_changed_service_is_upserted_whole_and_a_removed_one_named() {
    let publisher = SnapshotPublisher::new("pem".into(), policy());
    let base = publisher.current().version;
    let mut next = policy();
    next.services[0].endpoints.push(EndpointView {
        address: "127.0.0.1:2".into(),
    });
    next.services.remove(1); // shop/web
    publisher.publish_policy(next.clone()).unwrap();

    let delta = expect_delta(delta(&publisher, base, None));
    assert_eq!(delta.upserted, [next.services[0].clone()]);
    assert_eq!(delta.removed, [reference("shop", "web")]);
}

#[test]
fn a_new_trust_bundle_is_sent_alone() {
    let publisher = SnapshotPublisher::new("pem".into(), policy());
    let base = publisher.current().version;
    publisher.publish_trust_bundle("pem+next".into()).unwrap();
    let delta = expect_delta(delta(&publisher, base, Some(&payments())));
    assert_eq!(delta.trust_bundle.as_deref(), Some("pem+next"));
    assert!(delta.upserted.is_empty() && delta.removed.is_empty());
    assert_eq!(delta.server_policy, None);
}

#[test]
fn a_server_policy_change_reaches_its_own_service_only() {
    let publisher = SnapshotPublisher::new("pem".into(), policy());
    let base = publisher.current().version;
    let mut next = policy();
    let mut permissive = server_policy("web-admin");
    permissive.mtls = MtlsMode::Permissive;
    next.server_policies.insert(web_admin(), permissive.clone());
    publisher.publish_policy(next.clone()).unwrap();

    let own = expect_delta(delta(&publisher, base, Some(&web_admin())));
    assert_eq!(
        own.server_policy,
        Some(ServerPolicyUpdate {
            spec: Some(permissive)
        })
    );
    assert!(own.upserted.is_empty() && own.removed.is_empty());
    assert_eq!(
        delta(&publisher, base, Some(&payments())),
        Catchup::UpToDate
    );
    assert_eq!(delta(&publisher, base, None), Catchup::UpToDate);

    // Removed: back to the defaults.
    let base = publisher.current().version;
    next.server_policies.remove(&web_admin());
    publisher.publish_policy(next).unwrap();
    let own = expect_delta(delta(&publisher, base, Some(&web_admin())));
    assert_eq!(own.server_policy, Some(ServerPolicyUpdate { spec: None }));
    assert_eq!(
        delta(&publisher, base, Some(&payments())),
        Catchup::UpToDate
    );
}

#[test]
fn a_watcher_now_serving_another_service_gets_that_server_policy() {
    let publisher = SnapshotPublisher::new("pem".into(), policy());
    let config = publisher.current();
    let catchup = config.catch_up(config.version, None, Some(&web_admin()));
    let delta = expect_delta(catchup);
    assert_eq!(delta.base, delta.version);
    assert_eq!(
        delta.server_policy,
        Some(ServerPolicyUpdate {
            spec: Some(server_policy("web-admin"))
        })
    );
}

#[test]
fn nothing_new_is_up_to_date() {
    let publisher = SnapshotPublisher::new("pem".into(), policy());
    let current = publisher.current().version;
    assert_eq!(
        delta(&publisher, current, Some(&payments())),
        Catchup::UpToDate
    );
}

#[test]
fn deltas_compose_over_versions_the_latest_winning() {
    let publisher = SnapshotPublisher::new("pem".into(), policy());
    let base = publisher.current().version;
    let keeper = service("zoo", "keeper", "keeper", &[]);

    let mut p = policy();
    p.services.push(keeper.clone()); // base+1: keeper added
    publisher.publish_policy(p.clone()).unwrap();
    p.services[0].protocol = Protocol::Grpc; // base+2: payments changed
    publisher.publish_policy(p.clone()).unwrap();
    p.services.pop(); // base+3: keeper removed
    publisher.publish_policy(p.clone()).unwrap();
    p.services[0].protocol = Protocol::Tcp; // base+4: payments changed again
    publisher.publish_policy(p.clone()).unwrap();
    publisher.publish_trust_bundle("pem2".into()).unwrap(); // base+5
    publisher.publish_trust_bundle("pem3".into()).unwrap(); // base+6

    let all = expect_delta(delta(&publisher, base, Some(&payments())));
    assert_eq!((all.base, all.version), (base, base + 6));
    assert_eq!(all.upserted, [p.services[0].clone()], "the latest payments");
    assert_eq!(all.removed, [reference("zoo", "keeper")]);
    assert_eq!(all.trust_bundle.as_deref(), Some("pem3"));
    assert_eq!(all.server_policy, None);

    // From a later base: only what came after it.
    let late = expect_delta(delta(&publisher, base + 3, Some(&payments())));
    assert_eq!(late.base, base + 3);
    assert_eq!(late.upserted, [p.services[0].clone()]);
    assert!(late.removed.is_empty());

    // Removed, then added back: upserted.
    let base = publisher.current().version;
    p.services.remove(1);
    publisher.publish_policy(p.clone()).unwrap();
    publisher.publish_policy(policy()).unwrap();
    let back = expect_delta(delta(&publisher, base, None));
    assert!(back.removed.is_empty());
    assert!(back.upserted.iter().any(|s| s.name == "web"));
}

#[test]
fn a_watcher_behind_the_kept_changes_needs_the_full_state() {
    let publisher = SnapshotPublisher::new("pem".into(), policy());
    let start = publisher.current().version;
    for i in 0..=RecentChanges::KEEP {
        publisher.publish_trust_bundle(format!("pem{i}")).unwrap();
    }
    let current = publisher.current().version;
    assert_eq!(current, start + RecentChanges::KEEP as u64 + 1);
    assert_eq!(delta(&publisher, start, None), Catchup::TooFarBehind);
    // The oldest base still reachable is KEEP versions back.
    let oldest = current - RecentChanges::KEEP as u64;
    let delta = expect_delta(delta(&publisher, oldest, None));
    assert_eq!(delta.base, oldest);
    assert_eq!(
        delta.trust_bundle,
        Some(format!("pem{}", RecentChanges::KEEP))
    );
}

#[test]
fn the_bytes_of_a_delta_do_not_grow_with_the_mesh() {
    let line_for_one_edit = |extra: usize| {
        let mut p = policy();
        p.services
            .extend((0..extra).map(|i| service("zoo", &format!("s{i:04}"), "zoo", &[])));
        let publisher = SnapshotPublisher::new("pem".into(), p.clone());
        let base = publisher.current().version;
        p.services[0].protocol = Protocol::Grpc;
        publisher.publish_policy(p).unwrap();
        let delta = expect_delta(delta(&publisher, base, Some(&payments())));
        serde_json::to_vec(&outrigger_api::WatchEvent::Delta(delta))
            .unwrap()
            .len()
    };
    assert_eq!(line_for_one_edit(0), line_for_one_edit(500));
}
