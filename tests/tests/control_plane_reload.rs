//! Live reload: edits on disk reach open watch streams; invalid edits are rejected
//! (visible in /metrics) and the last good version stays in force until fixed.

use outrigger_tests::{
    ControlPlane, DESIGN_EXAMPLE, Mesh, PAYMENTS_YAML, START_LIMIT, WatchStream, enroll,
    eventually, id, path, write_atomically,
};

#[tokio::test]
async fn edits_are_pushed_invalid_edits_are_not_and_fixes_are() {
    let mesh = Mesh::with_payments();
    let cp = ControlPlane::start(&mesh).await;
    let anchor = mesh.anchor_pem();
    let orders = enroll(&cp, &anchor, &mesh.token("shop/orders"), &id("shop/orders")).await;
    let mut stream = WatchStream::open(&cp, &anchor, &orders, "/v1/watch?proxy=orders-1").await;
    let first = stream.next().await;
    assert!(first.services[0].traffic_policy.is_none());

    // An edit: all three kinds, written as editors do.
    let file = mesh.policy_dir().join("shop.yaml");
    write_atomically(&file, DESIGN_EXAMPLE);
    let second = stream.next().await;
    assert_eq!(second.version, first.version + 1);
    let traffic = second.services[0]
        .traffic_policy
        .as_ref()
        .expect("TrafficPolicy");
    assert_eq!(traffic.retries.as_ref().unwrap().attempts, Some(2));

    // An invalid edit: rejected, reported, nothing pushed.
    write_atomically(
        &file,
        &DESIGN_EXAMPLE
            .replace("attempts: 2 ", "attempts: 3 ")
            .replace("base: 25ms", "base: 25"),
    );
    eventually("the invalid edit to be reported", START_LIMIT, || async {
        cp.get_plain("/metrics")
            .await
            .1
            .contains("outrigger_control_plane_config_valid 0\n")
    })
    .await;
    let metrics = cp.get_plain("/metrics").await.1;
    assert!(
        metrics.contains("outrigger_control_plane_config_reloads_total{result=\"error\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "outrigger_control_plane_config_version {}\n",
            second.version
        )),
        "{metrics}"
    );
    let (_, status) = cp.get_plain("/api/status").await;
    assert!(
        status.contains(&format!(
            "{}:21: spec.retries.backoff.base: invalid duration",
            path(&file)
        )),
        "{status}"
    );
    let log = cp.log();
    assert!(
        log.contains(&format!(
            "{}:21: spec.retries.backoff.base: invalid duration \"25\"",
            path(&file)
        )),
        "{log}"
    );

    // The fix is pushed, and it is the next line of the stream: nothing came between.
    write_atomically(
        &file,
        &DESIGN_EXAMPLE.replace("attempts: 2 ", "attempts: 3 "),
    );
    let third = stream.next().await;
    assert_eq!(third.version, second.version + 1);
    let traffic = third.services[0].traffic_policy.as_ref().unwrap();
    assert_eq!(traffic.retries.as_ref().unwrap().attempts, Some(3));
    eventually("the config to be valid again", START_LIMIT, || async {
        cp.get_plain("/metrics")
            .await
            .1
            .contains("outrigger_control_plane_config_valid 1\n")
    })
    .await;
    assert!(
        !cp.get_plain("/api/status")
            .await
            .1
            .contains("config_errors")
    );

    // A new file in a new subdir, then a deleted file.
    let sub = mesh.policy_dir().join("billing");
    std::fs::create_dir(&sub).unwrap();
    write_atomically(
        &sub.join("billing.yaml"),
        &PAYMENTS_YAML.replace("payments", "billing"),
    );
    let fourth = stream.next().await;
    let names: Vec<&str> = fourth.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["billing", "payments"]);
    std::fs::remove_file(sub.join("billing.yaml")).unwrap();
    let fifth = stream.next().await;
    assert_eq!(fifth.services.len(), 1);
    assert_eq!(fifth.version, fourth.version + 1);
}
