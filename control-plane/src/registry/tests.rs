//! Registration, health transitions and expiry, on paused tokio time.

use outrigger_api::{EndpointView, Protocol, ServiceView};

use super::*;
use crate::policy::Policy;

const TTL: Duration = Duration::from_secs(10);

fn id(short: &str) -> SpiffeId {
    SpiffeId::from_short("cluster.local", short).unwrap()
}

/// shop/payments (identity shop/payments, one static endpoint) and shop/orders.
fn publisher() -> SnapshotPublisher {
    let service = |name: &str, endpoints: &[&str]| ServiceView {
        addresses: vec![],
        name: name.into(),
        namespace: "shop".into(),
        identity: format!("spiffe://cluster.local/ns/shop/sa/{name}"),
        protocol: Protocol::Http,
        endpoints: endpoints
            .iter()
            .map(|a| EndpointView {
                address: a.to_string(),
            })
            .collect(),
        traffic_policy: None,
    };
    let policy = Policy {
        services: vec![
            service("orders", &[]),
            service("payments", &["127.0.0.1:9000"]),
        ],
        server_policies: Default::default(),
    };
    SnapshotPublisher::new("pem".into(), policy)
}

fn instance(address: &str, healthy: bool) -> Instance {
    Instance {
        service: "payments".into(),
        namespace: "shop".into(),
        address: address.into(),
        healthy,
    }
}

fn endpoints(publisher: &SnapshotPublisher) -> Vec<String> {
    publisher
        .current()
        .service(&ServiceKey::new("shop", "payments"))
        .unwrap()
        .endpoints
        .iter()
        .map(|e| e.address.clone())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn healthy_instances_join_and_leave_on_health_and_expiry() {
    let publisher = publisher();
    let registry = Registry::new(TTL, 100, publisher.clone());
    let (_stop, stopping) = watch::channel(false);
    tokio::spawn(registry.clone().run_expiry(stopping));
    let me = id("shop/payments");
    let v0 = publisher.current().version;

    // Registers: a new version with the instance after the static endpoint.
    let hb = |healthy| registry.heartbeat("p1", &me, Some(&instance("127.0.0.1:4143", healthy)));
    assert_eq!(hb(true), Ok(Some(v0 + 1)));
    assert_eq!(endpoints(&publisher), ["127.0.0.1:9000", "127.0.0.1:4143"]);
    // Renewing changes nothing that is pushed.
    assert_eq!(hb(true), Ok(None));

    // Unhealthy: out; healthy again: back.
    assert_eq!(hb(false), Ok(Some(v0 + 2)));
    assert_eq!(endpoints(&publisher), ["127.0.0.1:9000"]);
    assert_eq!(hb(false), Ok(None));
    assert_eq!(registry.healthy_count(), 0);
    assert_eq!(hb(true), Ok(Some(v0 + 3)));
    assert_eq!(registry.healthy_count(), 1);

    // Heartbeats within the TTL keep it; silence for the TTL expires it.
    tokio::time::sleep(TTL - Duration::from_secs(1)).await;
    assert_eq!(hb(true), Ok(None));
    tokio::time::sleep(TTL - Duration::from_secs(1)).await;
    assert_eq!(endpoints(&publisher).len(), 2, "renewed, not expired");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(endpoints(&publisher), ["127.0.0.1:9000"]);
    assert_eq!(publisher.current().version, v0 + 4);

    // A heartbeat after expiry registers it again.
    assert_eq!(hb(true), Ok(Some(v0 + 5)));
    assert_eq!(endpoints(&publisher).len(), 2);
    tokio::time::sleep(TTL + Duration::from_secs(1)).await;
    assert_eq!(endpoints(&publisher).len(), 1, "expired again");
}

#[tokio::test(start_paused = true)]
async fn several_instances_dedupe_and_withdraw() {
    let publisher = publisher();
    let registry = Registry::new(TTL, 100, publisher.clone());
    let me = id("shop/payments");
    let v0 = publisher.current().version;
    // The static endpoint registered again: no change.
    assert_eq!(
        registry.heartbeat("p0", &me, Some(&instance("127.0.0.1:9000", true))),
        Ok(None)
    );
    registry
        .heartbeat("p1", &me, Some(&instance("127.0.0.1:4143", true)))
        .unwrap();
    registry
        .heartbeat("p2", &me, Some(&instance("127.0.0.2:4143", true)))
        .unwrap();
    // Same address from a second proxy (a restart): one endpoint.
    assert_eq!(
        registry.heartbeat("p1-restarted", &me, Some(&instance("127.0.0.1:4143", true))),
        Ok(None)
    );
    assert_eq!(
        endpoints(&publisher),
        ["127.0.0.1:9000", "127.0.0.1:4143", "127.0.0.2:4143"]
    );
    assert_eq!(publisher.current().version, v0 + 2);
    // A heartbeat without an instance withdraws it.
    assert!(registry.heartbeat("p2", &me, None).unwrap().is_some());
    assert_eq!(endpoints(&publisher), ["127.0.0.1:9000", "127.0.0.1:4143"]);
    // Expiry (driven by hand here) removes the rest at once.
    assert!(registry.expire(Instant::now() + TTL).is_some());
    assert_eq!(endpoints(&publisher), ["127.0.0.1:9000"]);
}

#[tokio::test(start_paused = true)]
async fn refusals() {
    let publisher = publisher();
    let registry = Registry::new(TTL, 100, publisher.clone());
    let v0 = publisher.current().version;

    // Another identity's service.
    let err = registry
        .heartbeat(
            "p1",
            &id("shop/orders"),
            Some(&instance("127.0.0.1:4143", true)),
        )
        .unwrap_err();
    assert!(matches!(err, RegisterError::Forbidden(_)));
    assert_eq!(
        err.to_string(),
        "MeshService shop/payments has identity spiffe://cluster.local/ns/shop/sa/payments, \
         not the caller's spiffe://cluster.local/ns/shop/sa/orders"
    );
    // A service that does not exist.
    let mut unknown = instance("127.0.0.1:4143", true);
    unknown.service = "billing".into();
    let err = registry
        .heartbeat("p1", &id("shop/payments"), Some(&unknown))
        .unwrap_err();
    assert!(
        matches!(&err, RegisterError::Forbidden(m) if m.contains("no MeshService shop/billing"))
    );
    // Addresses peers cannot use.
    for bad in ["localhost:4143", "127.0.0.1", "0.0.0.0:4143", "127.0.0.1:0"] {
        let err = registry
            .heartbeat("p1", &id("shop/payments"), Some(&instance(bad, true)))
            .unwrap_err();
        assert!(matches!(err, RegisterError::Invalid(_)), "{bad}");
    }
    assert_eq!(publisher.current().version, v0, "nothing published");

    // A registered instance that turns into a refused one is withdrawn.
    let me = id("shop/payments");
    registry
        .heartbeat("p1", &me, Some(&instance("127.0.0.1:4143", true)))
        .unwrap();
    assert_eq!(endpoints(&publisher).len(), 2);
    assert!(registry.heartbeat("p1", &me, Some(&unknown)).is_err());
    assert_eq!(endpoints(&publisher).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_full_service_refuses_new_instances_until_one_leaves() {
    let publisher = publisher();
    let registry = Registry::new(TTL, 3, publisher.clone());
    let me = id("shop/payments");
    let key = ServiceKey::new("shop", "payments");
    for n in 1..=3 {
        let address = format!("127.0.0.{n}:4143");
        // Unhealthy ones count too: they take as much room.
        registry
            .heartbeat(&format!("p{n}"), &me, Some(&instance(&address, n != 2)))
            .unwrap();
    }
    assert_eq!(registry.count(&key), 3);
    let err = registry
        .heartbeat("p4", &me, Some(&instance("127.0.0.4:4143", true)))
        .unwrap_err();
    assert!(
        matches!(&err, RegisterError::Full(m) if m.contains("already has 3 registered instances")),
        "{err}"
    );
    // Renewals of the registered ones pass.
    assert!(
        registry
            .heartbeat("p1", &me, Some(&instance("127.0.0.1:4143", true)))
            .is_ok()
    );
    // One withdraws: room for the fourth.
    registry.heartbeat("p3", &me, None).unwrap();
    assert_eq!(registry.count(&key), 2);
    registry
        .heartbeat("p4", &me, Some(&instance("127.0.0.4:4143", true)))
        .unwrap();
    // Expiry frees the room too.
    registry.expire(Instant::now() + TTL);
    assert_eq!(registry.count(&key), 0);
}

#[tokio::test(start_paused = true)]
async fn a_revoked_identity_is_withdrawn_at_once() {
    let publisher = publisher();
    let registry = Registry::new(TTL, 100, publisher.clone());
    let me = id("shop/payments");
    registry
        .heartbeat("p1", &me, Some(&instance("127.0.0.1:4143", true)))
        .unwrap();
    assert_eq!(endpoints(&publisher).len(), 2);
    assert!(
        registry
            .withdraw_identity("spiffe://cluster.local/ns/shop/sa/orders")
            .is_none()
    );
    assert!(registry.withdraw_identity(me.as_str()).is_some());
    assert_eq!(endpoints(&publisher), ["127.0.0.1:9000"]);
    assert_eq!(registry.count(&ServiceKey::new("shop", "payments")), 0);
}
