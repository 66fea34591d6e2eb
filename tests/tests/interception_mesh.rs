//! The pod's data path, in real network namespaces: pods A and B each run
//! `outrigger-proxy init` and a real sidecar as the proxy's uid; the control plane runs in
//! a pod of its own; A's app knows nothing of the mesh. Checked: an HTTP call to B's pod
//! IP and to B's service address crosses both sidecars over mTLS and B's app learns who
//! called; non-HTTP bytes to a service of B are detected as opaque and cross over mTLS,
//! counted by both sidecars' TCP metrics; a server-first protocol (B speaks first, on an
//! opaque port) works without waiting on detection; a destination outside the mesh is
//! passed through.
//!
//! Needs root, `ip`, `iptables`, `setpriv` and `curl`; elsewhere it prints
//! `NETNS-SKIPPED: why` and passes (CI makes that a failure, see .ci/run).

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use outrigger_tests::netns::{APP_UID, PROXY_UID};
use outrigger_tests::{Mesh, Network, Pod, Process, START_LIMIT, bin};

/// A service address for B (a ClusterIP in Kubernetes): routed nowhere, only redirected.
const B_SERVICE_ADDR: &str = "10.96.0.10:80";

fn init(pod: &Pod) {
    let out = pod
        .command(bin("outrigger-proxy"))
        .arg("init")
        .output()
        .expect("run outrigger-proxy init");
    assert!(out.status.success(), "init in {}: {out:?}", pod.name);
    // A default route, so that a connect to an address no pod has (B's service address)
    // is routed, and so redirected, instead of failing as unreachable.
    let out = pod.run("ip", &["route", "add", "default", "dev", "eth0"]);
    assert!(
        out.status.success(),
        "default route in {}: {out:?}",
        pod.name
    );
}

/// Polls `check` until it is true; the limit only bounds a broken build.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + START_LIMIT;
    while !check() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `curl` inside `pod`, as the app: the body, or what went wrong.
fn http_get(pod: &Pod, url: &str) -> String {
    let out = pod
        .command_as(APP_UID, "curl")
        .args(["-sS", "-m", "10", url])
        .output()
        .expect("run curl");
    format!(
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

/// A sidecar's `/metrics`, read inside its pod.
fn metrics(pod: &Pod) -> String {
    stdout(&pod.run("curl", &["-sS", "-m", "5", "http://127.0.0.1:4191/metrics"]))
}

/// The sum of a metric's samples whose label text contains every one of `labels`.
fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// A process inside `pod` that prints `listening` once bound.
fn listening(label: &str, command: std::process::Command, logs: &Path) -> Process {
    let process = Process::spawn(label, command, logs);
    eventually(&format!("{label} listens"), || {
        process.log().contains("listening")
    });
    process
}

/// Lets the proxy's uid read what it must: the trust anchor and the token files (the
/// test's temp dir belongs to root).
fn readable(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

fn sidecar(mesh: &Mesh, pod: &Pod, identity: &str, cp: &Pod, extra: &[(&str, &str)]) -> Process {
    let token = mesh.token_file(identity);
    readable(&token, 0o644);
    let mut command = pod.command_as(PROXY_UID, bin("outrigger-proxy"));
    command
        .env("OUTRIGGER_CONTROL_PLANE", format!("{}:8443", cp.ip))
        .env("OUTRIGGER_TRUST_ANCHORS", mesh.trust_anchor())
        .env("OUTRIGGER_TOKEN_FILE", token)
        .env("OUTRIGGER_INBOUND_ADDR", "0.0.0.0:4143")
        .env("OUTRIGGER_OUTBOUND_ADDR", "127.0.0.1:4140")
        .env("OUTRIGGER_ADMIN_ADDR", "127.0.0.1:4191");
    for (key, value) in extra {
        command.env(key, value);
    }
    let name = format!("sidecar-{}", identity.replace('/', "-"));
    let process = Process::spawn(&name, command, mesh.root());
    eventually(&format!("{identity}'s sidecar ready"), || {
        pod.run("curl", &["-sf", "-m", "2", "http://127.0.0.1:4191/ready"])
            .status
            .success()
    });
    process
}

#[test]
fn an_app_that_knows_nothing_of_the_mesh_is_carried_over_mtls() {
    let Some(mut network) = Network::new() else {
        return;
    };
    if outrigger_tests::netns::which("curl").is_none() {
        eprintln!("NETNS-SKIPPED: `curl` is not installed");
        return;
    }
    let (cp, a, b, c) = (
        network.pod("cp"),
        network.pod("a"),
        network.pod("b"),
        network.pod("c"),
    );
    let mesh = Mesh::new();
    for dir in [
        mesh.root().to_path_buf(),
        mesh.data_dir(),
        mesh.data_dir().join("ca"),
    ] {
        readable(&dir, 0o755);
    }
    readable(&mesh.trust_anchor(), 0o644);
    let b_ip = b.ip;
    let service = |name: &str, endpoint: String, extra: &str| {
        format!(
            "apiVersion: outrigger.dev/v1alpha1\nkind: MeshService\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  identity: spiffe://cluster.local/ns/shop/sa/b\n  endpoints:\n    - address: {endpoint}\n{extra}"
        )
    };
    mesh.write_policy(
        "b.yaml",
        &service(
            "b",
            format!("{b_ip}:8080"),
            &format!("  addresses: [\"{B_SERVICE_ADDR}\"]\n"),
        ),
    );
    mesh.write_policy(
        "b-echo.yaml",
        &service("b-echo", format!("{b_ip}:9000"), ""),
    );
    mesh.write_policy("b-db.yaml", &service("b-db", format!("{b_ip}:5432"), ""));

    // The control plane, in its own pod, as a cluster's would be.
    let mut command = cp.command(bin("outrigger"));
    command
        .args(["control-plane", "--data-dir"])
        .arg(mesh.data_dir());
    command.arg("--policy-dir").arg(mesh.policy_dir());
    command.args([
        "--listen",
        &format!("{}:8443", cp.ip),
        "--http",
        "127.0.0.1:8080",
        "--registration-warmup",
        "0s",
    ]);
    let _control_plane = Process::spawn("control-plane", command, mesh.root());
    eventually("the control plane is ready", || {
        cp.run("curl", &["-sf", "-m", "2", "http://127.0.0.1:8080/ready"])
            .status
            .success()
    });

    // B: three apps (HTTP, TCP echo, and a server-first one on an opaque port) and its
    // sidecar; A: its sidecar only (its "app" is curl and the probe, run as another uid).
    // C: outside the mesh, no rules, no sidecar.
    let probe = bin("netns_probe");
    let logs = mesh.root();
    let mut http_app = b.command_as(APP_UID, &probe);
    http_app.args(["http", "0.0.0.0:8080", "b"]);
    let _http_app = listening("b-http", http_app, logs);
    let mut echo_app = b.command_as(APP_UID, &probe);
    echo_app.args(["echo", "0.0.0.0:9000"]);
    let _echo_app = listening("b-echo", echo_app, logs);
    let mut db_app = b.command_as(APP_UID, &probe);
    db_app.args(["listen", "0.0.0.0:5432", "b-db"]);
    let _db_app = listening("b-db", db_app, logs);
    let mut outside = c.command(&probe);
    outside.args(["listen", &format!("{}:7000", c.ip), "c"]);
    let _outside = listening("c", outside, logs);

    init(&a);
    init(&b);
    let _b_sidecar = sidecar(
        &mesh,
        &b,
        "shop/b",
        &cp,
        &[("OUTRIGGER_APP_ADDR", "127.0.0.1:8080")],
    );
    let _a_sidecar = sidecar(&mesh, &a, "shop/a", &cp, &[]);
    let caller = "client_id=spiffe://cluster.local/ns/shop/sa/a";

    // HTTP to B's pod IP and app port: both sidecars, and B's app learns who called.
    let reply = http_get(&a, &format!("http://{b_ip}:8080/orders"));
    assert_eq!(reply, format!("b {caller}"), "to the pod IP");
    // The same by B's service address.
    let reply = http_get(&a, &format!("http://{B_SERVICE_ADDR}/orders"));
    assert_eq!(reply, format!("b {caller}"), "to the service address");

    // Bytes that are not HTTP: detected as opaque, carried over mTLS, echoed.
    let text = "~~ opaque bytes, not HTTP ~~";
    let out = a
        .command_as(APP_UID, &probe)
        .args(["send", &format!("{b_ip}:9000"), text])
        .output()
        .expect("run the probe");
    assert_eq!(stdout(&out), text, "echoed through both sidecars");

    // Server-first, on an opaque port: B's greeting arrives though A's app sent nothing.
    let out = a
        .command_as(APP_UID, &probe)
        .args(["connect", &format!("{b_ip}:5432")])
        .output()
        .expect("run the probe");
    assert_eq!(
        stdout(&out),
        "b-db direct",
        "B's app saw a local connection"
    );

    // Outside the mesh: passed through as it was sent.
    let out = a
        .command_as(APP_UID, &probe)
        .args(["connect", &format!("{}:7000", c.ip)])
        .output()
        .expect("run the probe");
    assert_eq!(stdout(&out), "c direct");

    let (a_metrics, b_metrics) = (metrics(&a), metrics(&b));
    for (side, text, direction) in [("A", &a_metrics, "outbound"), ("B", &b_metrics, "inbound")] {
        let opened = metric_sum(
            text,
            "outrigger_tcp_open_total",
            &[&format!("direction=\"{direction}\"")],
        );
        assert!(
            opened >= 2.0,
            "{side}'s sidecar counted the TCP connections:\n{text}"
        );
    }
    assert_eq!(
        metric_sum(&a_metrics, "outrigger_egress_connections_total", &[]),
        1.0,
        "one connection left the mesh:\n{a_metrics}"
    );
    let handshakes = metric_sum(
        &b_metrics,
        "outrigger_tls_handshakes_total",
        &["result=\"ok\""],
    );
    assert!(handshakes >= 1.0, "B accepted mTLS:\n{b_metrics}");
}
