//! The metrics pages as real Prometheus tooling reads them (Debian's `prometheus`
//! package): `promtool check metrics` accepts the sidecars' and the control plane's
//! pages, and a real Prometheus scraping two sidecars answers a PromQL query with the
//! number of requests the test sent.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use outrigger_tests::components::require;
use outrigger_tests::{
    EchoApp, Http1, Mesh, Process, Sidecar, eventually, free_port, get_h1, loopback,
};

/// orders → payments, both sidecars up, `requests` calls made through them.
async fn two_sidecars(requests: usize) -> (Mesh, Sidecar, Sidecar, std::sync::Arc<EchoApp>) {
    let app = EchoApp::start("payments").await;
    let port = free_port();
    let mut mesh = Mesh::new();
    mesh.add_service("shop", "payments", "shop/payments", &[loopback(port)]);
    mesh.start_control_plane().await;
    let orders = mesh
        .sidecar("orders", "shop/orders", None, free_port())
        .await;
    let payments = mesh
        .sidecar("payments", "shop/payments", Some(app.addr), port)
        .await;
    let mut client = Http1::connect(orders.outbound).await.expect("connect");
    for _ in 0..requests {
        let reply = client.get("payments.shop", "/", &[]).await.expect("a call");
        assert_eq!(reply.status, 200);
    }
    (mesh, orders, payments, app)
}

/// `promtool check metrics` on `text`: its exit code and what it said.
fn promtool_check(promtool: &Path, text: &str) -> (i32, String) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool ends");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), said)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_every_metrics_page() {
    let Some(promtool) = require("promtool", "promtool_accepts_every_metrics_page") else {
        return;
    };
    let (mesh, orders, payments, _app) = two_sidecars(3).await;
    let control_plane = get_h1(mesh.cp_http, "localhost", "/metrics")
        .await
        .expect("control plane /metrics");
    for (who, text) in [
        ("orders' sidecar", orders.metrics().await),
        ("payments' sidecar", payments.metrics().await),
        ("the control plane", control_plane.body),
    ] {
        assert!(text.contains("outrigger_"), "{who}: {text}");
        let (code, said) = promtool_check(&promtool, &text);
        assert_eq!(code, 0, "promtool on {who}'s page: {said}\n{text}");
    }
}

/// A Prometheus server on loopback, scraping `targets` every 500 ms. Stopped on drop.
struct Prometheus {
    _process: Process,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    async fn start(binary: &Path, targets: &[SocketAddr]) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 500ms\n  scrape_timeout: 400ms\n\
             scrape_configs:\n  - job_name: sidecars\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write the config");
        let addr = loopback(free_port());
        let mut command = Command::new(binary);
        command.args([
            format!("--config.file={}", config_path.display()),
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            format!("--web.listen-address={addr}"),
        ]);
        let process = Process::spawn("prometheus", command, dir.path());
        eventually(
            "Prometheus is ready",
            Duration::from_secs(60),
            || async move {
                get_h1(addr, "localhost", "/-/ready")
                    .await
                    .is_ok_and(|r| r.status == 200)
            },
        )
        .await;
        Prometheus {
            _process: process,
            addr,
            _dir: dir,
        }
    }

    /// The value of a PromQL query whose answer is one sample (`None` while it has none).
    async fn scalar(&self, query: &str) -> Option<f64> {
        let path = format!("/api/v1/query?query={}", percent_encode(query));
        let reply = get_h1(self.addr, "localhost", &path).await.ok()?;
        let body: serde_json::Value = serde_json::from_str(&reply.body).ok()?;
        let result = body["data"]["result"].as_array()?;
        let [sample] = result.as_slice() else {
            return None;
        };
        sample["value"][1].as_str()?.parse().ok()
    }
}

fn percent_encode(query: &str) -> String {
    query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_counts_the_requests_the_test_sent() {
    let Some(prometheus) = require(
        "prometheus",
        "a_real_prometheus_counts_the_requests_the_test_sent",
    ) else {
        return;
    };
    const SENT: usize = 17;
    let (_mesh, orders, payments, app) = two_sidecars(SENT).await;
    assert_eq!(app.requests(), SENT);
    let server = Prometheus::start(&prometheus, &[orders.admin, payments.admin]).await;
    let outbound = "sum(outrigger_requests_total{direction=\"outbound\",service=\"payments.shop\",status_code=\"200\"})";
    // The callee's sidecar counts the same calls on the orders→payments edge.
    let edge = "sum(outrigger_requests_total{direction=\"inbound\",service=\"payments\",caller=\"spiffe://cluster.local/ns/shop/sa/orders\"})";
    let both_scraped = || async {
        server.scalar(outbound).await == Some(SENT as f64)
            && server.scalar(edge).await == Some(SENT as f64)
    };
    eventually(
        "Prometheus has scraped both sidecars' counts",
        Duration::from_secs(60),
        both_scraped,
    )
    .await;
    let up = server.scalar("sum(up{job=\"sidecars\"})").await;
    assert_eq!(up, Some(2.0), "both sidecars are scraped targets");
}
