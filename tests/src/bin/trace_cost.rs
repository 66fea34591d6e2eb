//! What tracing costs a sidecar, in instructions per request: a real proxy pair (orders'
//! outbound sidecar → payments' inbound sidecar → an echo app), both sidecars under
//! callgrind, with tracing off, the access log on, span export on, and both. Callgrind
//! counts only while N requests pass (it is switched on after a warm-up and dumped
//! after the last request's log line and span have had time to be written and sent),
//! so start-up is not in the numbers. Instruction counts do not depend on the machine's
//! load, which a shared machine needs.
//!
//! `cargo build --bins && RUST_LOG=warn ./target/debug/trace_cost 500`
//! (needs `valgrind`; debug builds give relative numbers only: optimised code runs far
//! fewer instructions, though the proportions are what this is for).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use outrigger_tests::{
    EchoApp, Http1, Mesh, OtlpReceiver, Process, Sidecar, bin, eventually, free_port, get_h1,
    loopback,
};

const WARM_UP: usize = 50;
/// Under callgrind a start-up takes several times as long as natively.
const START_LIMIT: Duration = Duration::from_secs(300);

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if std::env::var("RUST_LOG").as_deref() != Ok("warn") {
        eprintln!("run with RUST_LOG=warn: the tests' default debug logging would be measured too");
        std::process::exit(2);
    }
    let requests: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("a number of requests"))
        .unwrap_or(500);
    let out = tempfile::tempdir().expect("temp dir");
    // TRACE_COST_KEEP=1 keeps the dumps, for callgrind_annotate.
    let out_path = out.path().to_path_buf();
    if std::env::var_os("TRACE_COST_KEEP").is_some() {
        eprintln!("callgrind dumps in {}", out_path.display());
        std::mem::forget(out);
    }
    println!(
        "| tracing | outbound sidecar, instructions per request | inbound sidecar | of which `Tracer::begin` (outbound + inbound) |"
    );
    println!("|---|---|---|---|");
    let collector = OtlpReceiver::start().await;
    let endpoint = collector.endpoint();
    let scenarios: [(&str, Vec<(&str, &str)>); 4] = [
        ("off (default)", vec![]),
        ("access log", vec![("OUTRIGGER_ACCESS_LOG", "json")]),
        (
            "OTLP export",
            vec![("OUTRIGGER_OTLP_ENDPOINT", endpoint.as_str())],
        ),
        (
            "access log + OTLP",
            vec![
                ("OUTRIGGER_ACCESS_LOG", "json"),
                ("OUTRIGGER_OTLP_ENDPOINT", endpoint.as_str()),
            ],
        ),
    ];
    for (i, (name, env)) in scenarios.iter().enumerate() {
        let dir = out_path.join(format!("scenario-{i}"));
        std::fs::create_dir_all(&dir).expect("scenario dir");
        let [outbound, inbound] = measure(&dir, env, requests).await;
        println!(
            "| {name} | {} | {} | {} |",
            per_request(outbound.total, requests),
            per_request(inbound.total, requests),
            per_request(outbound.begin + inbound.begin, requests),
        );
    }
}

/// What one sidecar ran while the requests passed.
struct Counted {
    total: u64,
    /// Inclusive instructions of `Tracer::begin` (the always-on header handling).
    begin: u64,
}

async fn measure(dir: &Path, env: &[(&str, &str)], requests: usize) -> [Counted; 2] {
    let app = EchoApp::start("payments").await;
    let payments_port = free_port();
    let mut mesh = Mesh::new();
    mesh.add_service(
        "shop",
        "payments",
        "shop/payments",
        &[loopback(payments_port)],
    );
    mesh.start_control_plane().await;
    let orders = under_callgrind(&mesh, dir, "orders", None, free_port(), env);
    let payments = under_callgrind(&mesh, dir, "payments", Some(app.addr), payments_port, env);
    for sidecar in [&orders, &payments] {
        let admin = sidecar.admin;
        eventually(
            "sidecar ready under callgrind",
            START_LIMIT,
            || async move {
                matches!(get_h1(admin, "localhost", "/ready").await, Ok(r) if r.status == 200)
            },
        )
        .await;
    }
    let mut client = Http1::connect(orders.outbound).await.expect("connect");
    for _ in 0..WARM_UP {
        send(&mut client).await;
    }
    for sidecar in [&orders, &payments] {
        callgrind_control(&["--instr=on"], sidecar);
    }
    for _ in 0..requests {
        send(&mut client).await;
    }
    // Long enough for the access log thread to write and a span batch (1 s) to go.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let mut counted = Vec::new();
    for sidecar in [&orders, &payments] {
        callgrind_control(&["--dump"], sidecar);
        counted.push(read_dump(dir, sidecar.process.pid()));
    }
    let [outbound, inbound]: [Counted; 2] = counted.try_into().ok().expect("two sidecars");
    [outbound, inbound]
}

async fn send(client: &mut Http1) {
    let reply = client
        .get("payments.shop", "/", &[])
        .await
        .expect("request");
    assert_eq!(reply.status, 200, "{}", reply.body);
}

fn under_callgrind(
    mesh: &Mesh,
    dir: &Path,
    name: &str,
    app: Option<std::net::SocketAddr>,
    inbound_port: u16,
    env: &[(&str, &str)],
) -> Sidecar {
    let (outbound, admin, inbound) = (
        loopback(free_port()),
        loopback(free_port()),
        loopback(inbound_port),
    );
    let mut command = Command::new("valgrind");
    command
        .arg("--tool=callgrind")
        // Nothing is counted until the warm-up is over and instrumentation is turned on.
        .arg("--instr-atstart=no")
        .arg(format!(
            "--callgrind-out-file={}/callgrind.%p",
            dir.display()
        ))
        .arg(bin("outrigger-proxy"))
        .env("OUTRIGGER_CONTROL_PLANE", mesh.cp_api.to_string())
        .env("OUTRIGGER_TRUST_ANCHORS", mesh.trust_anchor())
        .env(
            "OUTRIGGER_TOKEN_FILE",
            mesh.token_file(&format!("shop/{name}")),
        )
        .env("OUTRIGGER_SERVICE", name)
        .env("OUTRIGGER_INBOUND_ADDR", inbound.to_string())
        .env("OUTRIGGER_OUTBOUND_ADDR", outbound.to_string())
        .env("OUTRIGGER_ADMIN_ADDR", admin.to_string())
        // No heartbeat in the window: the numbers are the requests'.
        .env("OUTRIGGER_HEARTBEAT_INTERVAL", "1h");
    if let Some(app) = app {
        command.env("OUTRIGGER_APP_ADDR", app.to_string());
    }
    for (key, value) in env {
        command.env(key, value);
    }
    Sidecar {
        process: Process::spawn(&format!("callgrind-{name}"), command, dir),
        inbound,
        outbound,
        admin,
    }
}

fn callgrind_control(args: &[&str], sidecar: &Sidecar) {
    let status = Command::new("callgrind_control")
        .args(args)
        .arg(sidecar.process.pid().to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run callgrind_control");
    assert!(status.success(), "callgrind_control {args:?}");
}

/// The total of the last dump of `pid`, and `Tracer::begin`'s inclusive share.
fn read_dump(dir: &Path, pid: u32) -> Counted {
    let dump = last_dump(dir, pid);
    let text = std::fs::read_to_string(&dump).expect("read the dump");
    let total = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("summary: ")
                .or_else(|| l.strip_prefix("totals: "))
        })
        .and_then(|n| n.trim().parse().ok())
        .expect("a total in the dump");
    let annotated = Command::new("callgrind_annotate")
        .arg("--inclusive=yes")
        .arg("--threshold=100")
        .arg(&dump)
        .output()
        .expect("run callgrind_annotate");
    let report = String::from_utf8_lossy(&annotated.stdout);
    let begin = report
        .lines()
        .filter(|l| l.contains("trace::Tracer::begin"))
        .filter_map(|l| {
            l.split_whitespace()
                .next()?
                .replace(',', "")
                .parse::<u64>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    Counted { total, begin }
}

/// Dumps are `callgrind.<pid>.<n>`: the highest n is the one just made.
fn last_dump(dir: &Path, pid: u32) -> PathBuf {
    let prefix = format!("callgrind.{pid}.");
    std::fs::read_dir(dir)
        .expect("read the dump dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .max_by_key(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .and_then(|e| e.parse::<u32>().ok())
        })
        .unwrap_or_else(|| panic!("no callgrind dump for {pid} in {}", dir.display()))
}

fn per_request(instructions: u64, requests: usize) -> String {
    let per = instructions / requests as u64;
    // Thousands separated, as callgrind prints them.
    let digits = per.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
