use outrigger_api::{Protocol, TargetRef, TrafficPolicySpec};

use super::*;

pub(super) fn service(ns: &str, name: &str, sa: &str, endpoints: &[&str]) -> ServiceView {
    ServiceView {
        addresses: vec![],
        name: name.into(),
        namespace: ns.into(),
        identity: format!("spiffe://cluster.local/ns/{ns}/sa/{sa}"),
        protocol: Protocol::Http,
        endpoints: endpoints
            .iter()
            .map(|a| EndpointView {
                address: a.to_string(),
            })
            .collect(),
        traffic_policy: None,
    }
}

fn id(short: &str) -> SpiffeId {
    SpiffeId::from_short("cluster.local", short).unwrap()
}

pub(super) fn server_policy(name: &str) -> ServerPolicySpec {
    ServerPolicySpec {
        target_ref: TargetRef {
            kind: "MeshService".into(),
            name: name.into(),
        },
        ..Default::default()
    }
}

/// shop/payments (its own identity, a ServerPolicy and a TrafficPolicy), and two services
/// sharing the identity shop/web.
pub(super) fn policy() -> Policy {
    let mut payments = service("shop", "payments", "payments", &["127.0.0.1:1"]);
    payments.traffic_policy = Some(TrafficPolicySpec {
        target_ref: TargetRef {
            kind: "MeshService".into(),
            name: "payments".into(),
        },
        ..Default::default()
    });
    Policy {
        services: vec![
            payments,
            service("shop", "web", "web", &[]),
            service("shop", "web-admin", "web", &[]),
        ],
        server_policies: [
            (
                ServiceKey::new("shop", "payments"),
                server_policy("payments"),
            ),
            (
                ServiceKey::new("shop", "web-admin"),
                server_policy("web-admin"),
            ),
        ]
        .into(),
    }
}

#[test]
fn versions_grow_by_one_per_change_only() {
    let publisher = SnapshotPublisher::new("pem".into(), Policy::default());
    let first = publisher.current().version;
    assert!(first > 1_600_000_000_000, "starts at unix millis");
    let mut rx = publisher.subscribe();
    assert_eq!(publisher.publish_policy(policy()), Some(first + 1));
    assert!(rx.has_changed().unwrap());
    rx.borrow_and_update();
    assert_eq!(publisher.publish_policy(policy()), None);
    assert!(!rx.has_changed().unwrap());
    assert_eq!(publisher.publish_registered(Registered::new()), None);
    assert_eq!(
        publisher.publish_trust_bundle("pem2".into()),
        Some(first + 2)
    );
    let mut changed = policy();
    changed.server_policies.clear();
    assert_eq!(publisher.publish_policy(changed), Some(first + 3));
    assert_eq!(publisher.current().services, policy().services);
}

#[test]
fn each_proxy_gets_every_service_and_its_own_server_policy() {
    let publisher = SnapshotPublisher::new("pem".into(), policy());
    let config = publisher.current();

    // By identity, when one service has it.
    let served = config.served_by(None, &id("shop/payments"));
    assert_eq!(served, Some(ServiceKey::new("shop", "payments")));
    let snap = config.snapshot_for(served.as_ref());
    assert_eq!(snap.version, config.version);
    assert_eq!(snap.trust_bundle, "pem");
    assert_eq!(snap.services.len(), 3);
    assert!(snap.services[0].traffic_policy.is_some());
    assert_eq!(snap.server_policy, Some(server_policy("payments")));

    // Two services share shop/web: ambiguous without the `service` parameter.
    assert_eq!(config.served_by(None, &id("shop/web")), None);
    assert_eq!(config.snapshot_for(None).server_policy, None);
    let asked = ServiceKey::new("shop", "web-admin");
    let served = config.served_by(Some(&asked), &id("shop/web"));
    assert_eq!(served.as_ref(), Some(&asked));
    assert_eq!(
        config.snapshot_for(served.as_ref()).server_policy,
        Some(server_policy("web-admin"))
    );
    // A service with no ServerPolicy, and an identity no service has.
    let web = config.served_by(Some(&ServiceKey::new("shop", "web")), &id("shop/web"));
    assert_eq!(config.snapshot_for(web.as_ref()).server_policy, None);
    assert_eq!(config.served_by(None, &id("ops/tool")), None);
}

#[test]
fn registered_endpoints_join_static_ones_deduplicated() {
    let publisher = SnapshotPublisher::new("pem".into(), policy());
    let payments = ServiceKey::new("shop", "payments");
    let endpoint = |address: &str, sa: &str| RegisteredEndpoint {
        address: address.into(),
        identity: format!("spiffe://cluster.local/ns/shop/sa/{sa}"),
    };
    let registered: Registered = [(
        payments.clone(),
        [
            endpoint("127.0.0.1:1", "payments"),
            endpoint("127.0.0.1:2", "payments"),
            // Registered under an identity the service no longer has: left out.
            endpoint("127.0.0.1:3", "web"),
        ]
        .into(),
    )]
    .into();
    let before = publisher.current().version;
    assert_eq!(publisher.publish_registered(registered), Some(before + 1));
    let config = publisher.current();
    let addresses: Vec<&str> = config
        .service(&payments)
        .unwrap()
        .endpoints
        .iter()
        .map(|e| e.address.as_str())
        .collect();
    assert_eq!(addresses, ["127.0.0.1:1", "127.0.0.1:2"]);

    // A reload keeps the registered instances: without the static 127.0.0.1:1, which is
    // also registered, the endpoints are the same, and nothing is pushed.
    let mut reloaded = policy();
    reloaded.services[0].endpoints.clear();
    assert_eq!(publisher.publish_policy(reloaded.clone()), None);
    reloaded.services[0].protocol = Protocol::Grpc;
    assert_eq!(publisher.publish_policy(reloaded), Some(before + 2));
    let config = publisher.current();
    assert_eq!(config.service(&payments).unwrap().endpoints.len(), 2);
}
