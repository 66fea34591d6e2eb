//! Transparent interception in real network namespaces: `outrigger-proxy init` applied
//! inside two pods, A and B. The rules are written once however often init runs, removed
//! exactly by `--cleanup`, and send each connection where the design says: the proxy's
//! own uid and loopback go direct, the app's outbound TCP goes to A's port 4140, and TCP
//! arriving at B goes to B's 4143 with its original destination kept.
//!
//! Needs root, `ip`, `iptables` and `setpriv`; elsewhere it prints `NETNS-SKIPPED: why`
//! and passes (CI makes that a failure, see .ci/run).

use std::path::Path;
use std::time::{Duration, Instant};

use outrigger_tests::netns::{APP_UID, PROXY_UID};
use outrigger_tests::{Network, Pod, Process, START_LIMIT, bin};

/// Runs `outrigger-proxy init ARGS` inside `pod`, as root, and requires success.
fn init(pod: &Pod, args: &[&str]) {
    let out = pod
        .command(bin("outrigger-proxy"))
        .arg("init")
        .args(args)
        .output()
        .expect("run outrigger-proxy init");
    assert!(
        out.status.success(),
        "init {args:?} in {}: {}",
        pod.name,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A listener inside `pod` on `port` that answers `LABEL original=ADDR` or `LABEL direct`.
fn listener(pod: &Pod, port: u16, label: &str, logs: &Path) -> Process {
    let mut command = pod.command(bin("netns_probe"));
    command.args(["listen", &format!("0.0.0.0:{port}"), label]);
    let process = Process::spawn(label, command, logs);
    // Bounds a broken build only; the listener prints as soon as it is bound.
    let deadline = Instant::now() + START_LIMIT;
    while !process.log().contains("listening") {
        assert!(
            Instant::now() < deadline,
            "{label} never listened: {}",
            process.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    process
}

/// Connects from inside `pod`, as `uid`, to `addr`; returns the answering listener's line.
fn connect(pod: &Pod, uid: u32, addr: &str) -> String {
    let out = pod
        .command_as(uid, bin("netns_probe"))
        .args(["connect", addr])
        .output()
        .expect("run netns_probe");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn count(text: &str, line: &str) -> usize {
    text.lines().filter(|l| *l == line).count()
}

#[test]
fn init_writes_one_set_of_rules_and_cleanup_removes_it() {
    let Some(mut network) = Network::new() else {
        return;
    };
    let pod = network.pod("a");
    let before = pod.nat_rules("iptables-save");
    let before_v6 = pod.nat_rules("ip6tables-save");

    init(&pod, &[]);
    init(&pod, &[]);
    let after = pod.nat_rules("iptables-save");
    for line in [
        ":OUTRIGGER_INBOUND -",
        ":OUTRIGGER_INBOUND_REDIRECT -",
        ":OUTRIGGER_OUTBOUND -",
        ":OUTRIGGER_OUTBOUND_REDIRECT -",
        "-A PREROUTING -p tcp -j OUTRIGGER_INBOUND",
        "-A OUTPUT -p tcp -j OUTRIGGER_OUTBOUND",
        "-A OUTRIGGER_OUTBOUND -m owner --uid-owner 2102 -j RETURN",
        "-A OUTRIGGER_INBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 4143",
        "-A OUTRIGGER_OUTBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 4140",
    ] {
        assert_eq!(count(&after, line), 1, "{line} once in:\n{after}");
    }
    // Different options on a second run replace the rules; they do not add to them.
    init(&pod, &["--skip-outbound-ports=5432"]);
    let changed = pod.nat_rules("iptables-save");
    assert_eq!(
        count(
            &changed,
            "-A OUTRIGGER_OUTBOUND -p tcp -m tcp --dport 5432 -j RETURN"
        ),
        1,
        "{changed}"
    );
    assert_eq!(
        changed.lines().count(),
        after.lines().count() + 1,
        "{changed}"
    );

    init(&pod, &["--cleanup"]);
    assert_eq!(pod.nat_rules("iptables-save"), before);
    assert_eq!(pod.nat_rules("ip6tables-save"), before_v6);
    // Nothing left to remove is not an error.
    init(&pod, &["--cleanup"]);
}

#[test]
fn connections_go_where_the_rules_say() {
    let Some(mut network) = Network::new() else {
        return;
    };
    let (a, b) = (network.pod("a"), network.pod("b"));
    let logs = tempfile::tempdir().expect("temp dir");
    init(&a, &["--skip-outbound-ports=5432"]);
    init(&b, &[]);
    // The proxy is not transparent yet: listeners stand in for its ports and say which
    // port took the connection and where it was going.
    let _listeners = [
        listener(&a, 4140, "a-outbound", logs.path()),
        listener(&a, 4143, "a-inbound", logs.path()),
        listener(&b, 4143, "b-inbound", logs.path()),
        listener(&b, 4191, "b-admin", logs.path()),
    ];
    let (a_ip, b_ip) = (a.ip, b.ip);

    // The app's connection to another pod goes to its own sidecar's outbound port.
    assert_eq!(
        connect(&a, APP_UID, &format!("{b_ip}:8080")),
        format!("a-outbound original={b_ip}:8080")
    );
    // The proxy's own connection is not looped back: it leaves the pod, and B's rules
    // hand it to B's inbound port with the port it was meant for.
    assert_eq!(
        connect(&a, PROXY_UID, &format!("{b_ip}:8080")),
        format!("b-inbound original={b_ip}:8080")
    );
    // What A's sidecar will do: call B's sidecar at its inbound port. (B's redirect of
    // B:4143 to B's 4143 changes nothing, so the listener sees it as direct.)
    assert_eq!(
        connect(&a, PROXY_UID, &format!("{b_ip}:4143")),
        "b-inbound direct"
    );
    // The admin port is never redirected inbound: probes reach it.
    assert_eq!(
        connect(&a, PROXY_UID, &format!("{b_ip}:4191")),
        "b-admin direct"
    );
    // A skipped outbound port leaves A untouched (and B's inbound takes it).
    assert_eq!(
        connect(&a, APP_UID, &format!("{b_ip}:5432")),
        format!("b-inbound original={b_ip}:5432")
    );
    // Loopback is the pod talking to itself: never redirected.
    assert_eq!(connect(&a, APP_UID, "127.0.0.1:4143"), "a-inbound direct");
    // Except the pod's own IP: the app calling itself that way goes inbound, as a call
    // from another pod would.
    assert_eq!(
        connect(&a, APP_UID, &format!("{a_ip}:8080")),
        format!("a-inbound original={a_ip}:8080")
    );

    // After cleanup, the app's connection goes where it was sent.
    init(&a, &["--cleanup"]);
    init(&b, &["--cleanup"]);
    assert_eq!(
        connect(&a, APP_UID, &format!("{b_ip}:4143")),
        "b-inbound direct"
    );
    // The data path through real sidecars in pods: tests/tests/interception_mesh.rs.
}
