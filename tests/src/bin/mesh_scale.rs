//! How a sidecar's cost follows the size of the mesh: the real control plane pushes N
//! MeshServices (each with two endpoints and a TrafficPolicy) to a real sidecar whose app
//! calls 10 of them. For each N it prints the sidecar's RSS once ready, after the calls,
//! its peak RSS, and how long one policy edit takes to be applied by the sidecar.
//!
//! `cargo run --release -p outrigger-tests --bin mesh_scale -- 1 1000 10000`
//! (the binaries it starts are those of the same profile: build them first with
//! `cargo build --release --workspace`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use outrigger_tests::{EchoApp, Mesh, Sidecar, get_h1};

/// How many services the app calls, whatever the size of the mesh.
const CALLED: usize = 10;
const SERVICES_PER_FILE: usize = 100;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("sizes are numbers of services"))
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1, 1_000, 10_000]
    } else {
        sizes
    };
    println!(
        "| services | RSS ready | RSS after calling {CALLED} | peak RSS | edit → applied by the sidecar | sidecar's apply |"
    );
    println!("|---|---|---|---|---|---|");
    for n in sizes {
        let row = measure(n).await;
        println!(
            "| {n} | {:.1} MB | {:.1} MB | {:.1} MB | {} ms | {} |",
            mb(row.rss_ready),
            mb(row.rss_called),
            mb(row.rss_peak),
            row.edit_to_applied.as_millis(),
            row.apply_line
        );
    }
}

struct Row {
    rss_ready: u64,
    rss_called: u64,
    rss_peak: u64,
    edit_to_applied: Duration,
    apply_line: String,
}

async fn measure(n: usize) -> Row {
    let mut mesh = Mesh::new();
    let app_a = EchoApp::start("backend-a").await;
    let app_b = EchoApp::start("backend-b").await;
    let inbound = [outrigger_tests::free_port(), outrigger_tests::free_port()];
    let endpoints: Vec<SocketAddr> = inbound
        .iter()
        .map(|p| outrigger_tests::loopback(*p))
        .collect();
    mesh.add_service("shop", "backend", "shop/backend", &endpoints);
    write_services(&mesh, n, &endpoints, "2s");
    mesh.start_control_plane().await;
    let _servers: Vec<Sidecar> = vec![
        mesh.sidecar("backend", "shop/backend", Some(app_a.addr), inbound[0])
            .await,
        mesh.sidecar("backend", "shop/backend", Some(app_b.addr), inbound[1])
            .await,
    ];
    let client = mesh
        .sidecar("orders", "shop/orders", None, outrigger_tests::free_port())
        .await;
    // Ready means a certificate and a config: the whole mesh has been applied.
    let version = config_version(&client).await;
    let rss_ready = rss(&client, "VmRSS");
    for i in 0..CALLED.min(n) {
        for _ in 0..20 {
            let reply = get_h1(client.outbound, &format!("s{i}.shop"), "/")
                .await
                .expect("call through the mesh");
            assert_eq!(reply.status, 200, "s{i}: {}", reply.body);
        }
    }
    let rss_called = rss(&client, "VmRSS");

    // One edit: s0's TrafficPolicy gets another request timeout.
    let edited = Instant::now();
    write_file(&mesh, 0, n, &endpoints, "3s");
    let deadline = edited + Duration::from_secs(120);
    while config_version(&client).await == version {
        assert!(Instant::now() < deadline, "the edit was never applied");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let edit_to_applied = edited.elapsed();
    let apply_line = client
        .process
        .log()
        .lines()
        .rev()
        .find(|l| l.contains("config applied"))
        .map(|l| {
            let field = |name: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(name))
                    .unwrap_or("?")
                    .to_string()
            };
            format!("{} in {} µs", field("kind="), field("took_us="))
        })
        .unwrap_or_default();
    if std::env::var_os("MESH_SCALE_VERBOSE").is_some() {
        for line in mesh
            .control_plane_log()
            .lines()
            .filter(|l| l.contains("reloaded"))
        {
            eprintln!("control plane: {line}");
        }
    }
    Row {
        rss_ready,
        rss_called,
        rss_peak: rss(&client, "VmHWM"),
        edit_to_applied,
        apply_line,
    }
}

/// Services `s0..s{n-1}` in namespace shop, SERVICES_PER_FILE per file.
fn write_services(mesh: &Mesh, n: usize, endpoints: &[SocketAddr], timeout: &str) {
    for first in (0..n).step_by(SERVICES_PER_FILE) {
        write_file(mesh, first, n, endpoints, timeout);
    }
}

/// The file holding service `first` and the ones after it; `first`'s own policy has a
/// request timeout of `first_timeout`.
fn write_file(mesh: &Mesh, first: usize, n: usize, endpoints: &[SocketAddr], first_timeout: &str) {
    let start = first - first % SERVICES_PER_FILE;
    let mut yaml = String::new();
    let addresses: String = endpoints
        .iter()
        .map(|e| format!("    - address: {e}\n"))
        .collect();
    for i in start..(start + SERVICES_PER_FILE).min(n) {
        let timeout = if i == first { first_timeout } else { "2s" };
        yaml.push_str(&format!(
            "apiVersion: outrigger.dev/v1alpha1\nkind: MeshService\nmetadata: {{name: s{i}, namespace: shop}}\nspec:\n  identity: spiffe://cluster.local/ns/shop/sa/backend\n  protocol: http\n  endpoints:\n{addresses}---\napiVersion: outrigger.dev/v1alpha1\nkind: TrafficPolicy\nmetadata: {{name: s{i}, namespace: shop}}\nspec:\n  targetRef: {{kind: MeshService, name: s{i}}}\n  timeouts: {{connect: 1s, request: {timeout}}}\n  retries: {{attempts: 2, perTryTimeout: 500ms, retryOn: [connect-failure, reset, gateway-error]}}\n  circuitBreaker: {{consecutiveFailures: 5, baseEjection: 30s}}\n---\n"
        ));
    }
    mesh.write_policy(&format!("services-{start:06}.yaml"), &yaml);
}

/// From `/metrics`, which stays small: `/config` lists every service of the mesh, and
/// polling it would measure the page rather than the sidecar.
async fn config_version(sidecar: &Sidecar) -> u64 {
    let version = sidecar
        .metric("outrigger_config_version")
        .await
        .expect("outrigger_config_version");
    version as u64
}

/// A line of /proc/<pid>/status, in bytes.
fn rss(sidecar: &Sidecar, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", sidecar.process.pid()))
        .expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| {
            v.trim_start_matches(':')
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kb| kb * 1024)
        .expect("a VmRSS line")
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}
