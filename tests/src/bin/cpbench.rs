//! The control plane under load, on its own: how many certificate signing requests it
//! signs per second (each on a new mTLS connection, as a sidecar renewing its
//! certificate), and how long one policy change takes to reach 1,000 open watch streams.
//!
//! `cargo build --release --workspace && ./target/release/cpbench [WATCHERS] [SECONDS]`
//! (defaults 1000 and 10). The binaries it starts are those of the same profile.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use outrigger_certs::WorkloadKey;
use outrigger_tests::{
    ControlPlane, Mesh, WatchStream, control_plane_tls, enroll, id, request_certificate,
};

/// Clients sending CSRs at once.
const CSR_CLIENTS: usize = 8;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let watchers: usize = args.next().map_or(1000, |a| a.parse().expect("WATCHERS"));
    let seconds: u64 = args.next().map_or(10, |a| a.parse().expect("SECONDS"));
    let mesh = Mesh::with_payments();
    let cp = ControlPlane::start(&mesh).await;
    let anchor = mesh.anchor_pem();
    let workload = enroll(&cp, &anchor, &mesh.token("shop/orders"), &id("shop/orders")).await;

    let signed = csrs_per_second(&cp, &anchor, &workload, Duration::from_secs(seconds)).await;
    println!(
        "| CSRs signed per second ({CSR_CLIENTS} clients, a new mTLS connection each) | {signed:.0} |"
    );

    let (opened, median, slowest) =
        change_to_watchers(&mesh, &cp, &anchor, &workload, watchers).await;
    println!("| watch streams open at once | {opened} |");
    println!(
        "| policy change → applied by every watcher: median / slowest | {} ms / {} ms |",
        median.as_millis(),
        slowest.as_millis()
    );
    println!(
        "| control plane RSS with the watchers open | {:.1} MB |",
        rss_mb(cp.pid())
    );
}

/// Signs CSRs from `CSR_CLIENTS` clients for `length`, renewing as `workload`.
async fn csrs_per_second(
    cp: &ControlPlane,
    anchor: &str,
    workload: &outrigger_tests::Workload,
    length: Duration,
) -> f64 {
    let tls = control_plane_tls(anchor, Some(workload.certs.clone()));
    let done = Arc::new(AtomicUsize::new(0));
    let until = Instant::now() + length;
    let mut clients = Vec::new();
    for _ in 0..CSR_CLIENTS {
        let (tls, done, api) = (tls.clone(), done.clone(), cp.api);
        clients.push(tokio::spawn(async move {
            while Instant::now() < until {
                // The key is the sidecar's work, not the control plane's: made outside.
                let key = WorkloadKey::generate().expect("key");
                let csr = key.csr_pem(&id("shop/orders")).expect("CSR");
                let (status, body) = request_certificate(api, tls.clone(), &csr, None).await;
                assert_eq!(status, 200, "{body}");
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    for client in clients {
        client.await.expect("CSR client");
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Opens `watchers` watch streams, changes the policy once, and times each stream's next
/// line from the moment the file was written.
async fn change_to_watchers(
    mesh: &Mesh,
    cp: &ControlPlane,
    anchor: &str,
    workload: &outrigger_tests::Workload,
    watchers: usize,
) -> (usize, Duration, Duration) {
    let mut streams = Vec::with_capacity(watchers);
    for i in 0..watchers {
        let path = format!("/v1/watch?proxy=bench-{i}");
        let mut stream = WatchStream::open(cp, anchor, workload, &path).await;
        stream.next().await;
        streams.push(stream);
    }
    let written = Instant::now();
    // One more MeshService: every watcher (none filters by service) is told of it.
    mesh.add_service(
        "shop",
        "bench",
        "shop/bench",
        &[outrigger_tests::loopback(9)],
    );
    let mut readers = Vec::with_capacity(watchers);
    for mut stream in streams {
        readers.push(tokio::spawn(async move {
            stream.next_event().await;
            written.elapsed()
        }));
    }
    let mut times = Vec::with_capacity(watchers);
    for reader in readers {
        times.push(reader.await.expect("watcher"));
    }
    times.sort();
    (watchers, times[times.len() / 2], times[times.len() - 1])
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
