//! The status Lease against the recorded API server, with paused time: acquired when
//! absent, renewed, lost to another writer (409), taken over only after the holder
//! stopped renewing for `leaseDurationSeconds`, and given up when renewals fail.

use std::time::Duration;

use http::Method;
use tokio::sync::watch;

use super::mock_api::{Answer, MockApi};
use crate::kubernetes::lease::{self, Elector, LeaseConfig};

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/outrigger/leases";
const LEASE: &str =
    "/apis/coordination.k8s.io/v1/namespaces/outrigger/leases/outrigger-control-plane-status";

fn config() -> LeaseConfig {
    LeaseConfig::new("outrigger", "outrigger-control-plane-status", "cp-a")
}

/// The Lease as the API server holds it.
fn lease(holder: &str, version: &str, transitions: i32) -> Answer {
    Answer::json(
        200,
        serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "outrigger-control-plane-status", "namespace": "outrigger",
                         "resourceVersion": version},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                     "leaseTransitions": transitions,
                     "acquireTime": "2026-11-24T10:00:00.000000Z",
                     "renewTime": "2026-11-24T10:00:00.000000Z"}
        })
        .to_string(),
    )
}

fn status(code: u16, reason: &str) -> Answer {
    Answer::json(
        code,
        format!(
            r#"{{"kind": "Status", "apiVersion": "v1", "metadata": {{}}, "status": "Failure",
                "message": "leases \"outrigger-control-plane-status\": {reason}", "reason": "{reason}", "code": {code}}}"#
        ),
    )
}

/// The bodies of the writes (`POST` and `PUT`) received, parsed.
fn writes(mock: &MockApi) -> Vec<(Method, serde_json::Value)> {
    mock.received()
        .into_iter()
        .filter(|r| r.method == Method::POST || r.method == Method::PUT)
        .map(|r| (r.method, serde_json::from_str(&r.body).unwrap()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn an_absent_lease_is_created_and_then_renewed() {
    let mock = MockApi::from_fixtures(None);
    mock.on(
        Method::GET,
        LEASE,
        vec![status(404, "NotFound"), lease("cp-a", "11", 0)],
    );
    mock.on(Method::POST, LEASES, vec![lease("cp-a", "11", 0)]);
    mock.on(Method::PUT, LEASE, vec![lease("cp-a", "12", 0)]);
    let mut elector = Elector::new(mock.client(), config());

    assert!(elector.attempt().await.unwrap(), "created: held");
    let (method, created) = &writes(&mock)[0];
    assert_eq!(method, Method::POST);
    assert_eq!(created["spec"]["holderIdentity"], "cp-a");
    assert_eq!(created["spec"]["leaseDurationSeconds"], 15);
    assert_eq!(created["spec"]["leaseTransitions"], 0);

    assert!(elector.attempt().await.unwrap(), "renewed: still held");
    let (method, renewed) = &writes(&mock)[1];
    assert_eq!(method, Method::PUT);
    assert_eq!(
        renewed["metadata"]["resourceVersion"], "11",
        "the renewal names the version read: the optimistic lock"
    );
    assert_eq!(renewed["spec"]["holderIdentity"], "cp-a");
    assert_eq!(
        renewed["spec"]["leaseTransitions"], 0,
        "a renewal is no transition"
    );
}

#[tokio::test(start_paused = true)]
async fn a_write_answered_409_means_another_replica_won() {
    // The create race: both saw no Lease, the other created it first.
    let mock = MockApi::from_fixtures(None);
    mock.on(Method::GET, LEASE, vec![status(404, "NotFound")]);
    mock.on(Method::POST, LEASES, vec![status(409, "AlreadyExists")]);
    let mut elector = Elector::new(mock.client(), config());
    assert!(!elector.attempt().await.unwrap());

    // The renewal race: held, but someone else wrote the Lease since it was read.
    let mock = MockApi::from_fixtures(None);
    mock.on(Method::GET, LEASE, vec![lease("cp-a", "20", 0)]);
    mock.on(Method::PUT, LEASE, vec![status(409, "Conflict")]);
    let mut elector = Elector::new(mock.client(), config());
    assert!(!elector.attempt().await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn a_held_lease_is_taken_over_only_after_it_expires() {
    let mock = MockApi::from_fixtures(None);
    // cp-b holds it and renews it (new versions) for a while, then stops (30 repeats).
    mock.on(
        Method::GET,
        LEASE,
        vec![
            lease("cp-b", "30", 2),
            lease("cp-b", "31", 2),
            lease("cp-b", "32", 2),
        ],
    );
    mock.on(Method::PUT, LEASE, vec![lease("cp-a", "33", 3)]);
    let mut elector = Elector::new(mock.client(), config());

    for _ in 0..3 {
        assert!(!elector.attempt().await.unwrap(), "renewed by cp-b");
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    // Version 32 was first seen by the third look; the next one comes 10s after it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!elector.attempt().await.unwrap(), "unchanged for 10s < 15s");
    assert!(
        writes(&mock).is_empty(),
        "nothing written while cp-b holds it"
    );

    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(elector.attempt().await.unwrap(), "unchanged for 15s: taken");
    let (method, taken) = &writes(&mock)[0];
    assert_eq!(method, Method::PUT);
    assert_eq!(taken["metadata"]["resourceVersion"], "32");
    assert_eq!(taken["spec"]["holderIdentity"], "cp-a");
    assert_eq!(taken["spec"]["leaseTransitions"], 3);
}

#[tokio::test(start_paused = true)]
async fn the_loop_leads_renews_and_steps_down_when_renewals_fail() {
    let mock = MockApi::from_fixtures(None);
    let held = lease("cp-a", "40", 0);
    let failing = status(500, "InternalError");
    // Held for three rounds, then the API server fails every request.
    mock.on(
        Method::GET,
        LEASE,
        vec![held.clone(), held.clone(), held, failing],
    );
    mock.on(Method::PUT, LEASE, vec![lease("cp-a", "41", 0)]);
    let (leading, mut watching) = watch::channel(false);
    let (stop, stopping) = watch::channel(false);
    let task = tokio::spawn(lease::run(
        Elector::new(mock.client(), config()),
        leading,
        stopping,
    ));

    watching.wait_for(|l| *l).await.unwrap();
    let became_leader = tokio::time::Instant::now();
    // Renewed every 2s: three renewals, then failures from 6s on.
    watching.wait_for(|l| !*l).await.unwrap();
    let held_for = became_leader.elapsed();
    assert!(
        held_for >= Duration::from_secs(14) && held_for <= Duration::from_secs(15),
        "stepped down 10s after the last renewal (at 4s), before the others' 15s: {held_for:?}"
    );
    let renewals = writes(&mock).len();
    assert_eq!(renewals, 3);
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_holder_releases_the_lease_when_it_stops() {
    let mock = MockApi::from_fixtures(None);
    mock.on(Method::GET, LEASE, vec![lease("cp-a", "50", 0)]);
    mock.on(Method::PUT, LEASE, vec![lease("cp-a", "51", 0)]);
    let (leading, mut watching) = watch::channel(false);
    let (stop, stopping) = watch::channel(false);
    let task = tokio::spawn(lease::run(
        Elector::new(mock.client(), config()),
        leading,
        stopping,
    ));
    watching.wait_for(|l| *l).await.unwrap();
    stop.send(true).unwrap();
    task.await.unwrap();
    assert!(!*watching.borrow(), "no longer leading once stopped");
    let (method, released) = writes(&mock).pop().unwrap();
    assert_eq!(method, Method::PUT);
    assert!(
        released["spec"].get("holderIdentity").is_none(),
        "no holder: the next replica takes it at once: {released}"
    );

    // Another replica sees the released Lease and takes it without waiting 15s.
    let mock = MockApi::from_fixtures(None);
    let released = {
        let mut answer = lease("cp-b", "52", 1);
        let mut json: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        json["spec"]
            .as_object_mut()
            .unwrap()
            .remove("holderIdentity");
        answer.body = json.to_string();
        answer
    };
    mock.on(Method::GET, LEASE, vec![released]);
    mock.on(Method::PUT, LEASE, vec![lease("cp-a", "53", 2)]);
    let mut elector = Elector::new(mock.client(), config());
    assert!(elector.attempt().await.unwrap());
}
