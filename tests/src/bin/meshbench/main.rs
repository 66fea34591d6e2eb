//! meshbench: the cost of the mesh, measured in one run against a direct baseline and
//! against HAProxy and nginx doing the same two hops with mutual TLS.
//!
//! ```sh
//! cargo build --release --workspace
//! cargo run --release -p outrigger-tests --bin meshbench -- --runs 3
//! ```
//!
//! The upstream is nginx answering 1 KiB. For each topology, each run sends a constant
//! rate open-loop (latency from each request's due time) and reads each proxy's CPU time
//! and RSS from /proc; then a closed loop finds the maximum throughput. It prints
//! Markdown for BENCHMARKS.md: medians over the runs, the latency each topology adds to
//! the baseline's, and ratios to the peers measured in the same run.

mod callgrind;
mod load;
mod peers;
mod report;
mod topology;

use std::time::Duration;

use outrigger_tests::procstat;

use crate::peers::Wrappers;
use crate::report::{Row, Sample};
use crate::topology::Topology;

struct Args {
    rate: u64,
    duration: Duration,
    connections: usize,
    runs: usize,
    max_connections: usize,
    peers: bool,
    /// Instead of timing: instructions per request under callgrind.
    callgrind: bool,
}

impl Args {
    fn parse() -> Args {
        let mut args = Args {
            rate: 1000,
            duration: Duration::from_secs(10),
            connections: 8,
            runs: 3,
            max_connections: 32,
            peers: true,
            callgrind: false,
        };
        let mut words = std::env::args().skip(1);
        while let Some(word) = words.next() {
            let mut value = |name: &str| -> u64 {
                words
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage(&format!("{name} takes a number")))
            };
            match word.as_str() {
                "--rate" => args.rate = value("--rate"),
                "--seconds" => args.duration = Duration::from_secs(value("--seconds")),
                "--connections" => args.connections = value("--connections") as usize,
                "--runs" => args.runs = value("--runs") as usize,
                "--max-connections" => args.max_connections = value("--max-connections") as usize,
                "--no-peers" => args.peers = false,
                "--callgrind" => args.callgrind = true,
                other => usage(&format!("unknown argument {other:?}")),
            }
        }
        args
    }
}

fn usage(error: &str) -> ! {
    eprintln!("error: {error}");
    eprintln!(
        "usage: meshbench [--rate 1000] [--seconds 10] [--connections 8] [--runs 3] \
         [--max-connections 32] [--no-peers] [--callgrind]"
    );
    std::process::exit(2);
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let Some(nginx) = outrigger_tests::components::find("nginx") else {
        usage("the upstream is nginx: apt-get install nginx-light (or nginx)");
    };
    let dir = tempfile::tempdir().expect("a temp dir");
    if std::env::var_os("MESHBENCH_KEEP").is_some() {
        eprintln!("configs and logs kept in {}", dir.path().display());
    }
    let upstream = peers::nginx_upstream(&nginx, dir.path());
    let certs = peers::HopCerts::write(dir.path());
    if args.callgrind {
        let haproxy = outrigger_tests::components::find("haproxy");
        let setup = callgrind::Setup {
            dir: dir.path(),
            certs: &certs,
            upstream: upstream.addr,
            nginx: &nginx,
            haproxy: haproxy.as_deref().filter(|_| args.peers),
        };
        println!("| instructions per request (callgrind) | outbound | inbound |");
        println!("|---|---|---|");
        for pair in [
            callgrind::Pair::Outrigger,
            callgrind::Pair::Haproxy,
            callgrind::Pair::Nginx,
        ] {
            if !args.peers && !matches!(pair, callgrind::Pair::Outrigger) {
                continue;
            }
            match callgrind::per_request(pair, &setup).await {
                Some((outbound, inbound)) => {
                    println!("| {} | {outbound:.0} | {inbound:.0} |", pair.name())
                }
                None => eprintln!("{}: not measured (not installed, or no count)", pair.name()),
            }
        }
        if std::env::var_os("MESHBENCH_KEEP").is_some() {
            // The callgrind outputs, for callgrind_annotate.
            let _kept = dir.keep();
        }
        return;
    }

    let mut topologies: Vec<Topology> = vec![
        topology::baseline(upstream.addr),
        topology::outrigger(upstream.addr, Wrappers::default()).await,
    ];
    if args.peers {
        match outrigger_tests::components::find("haproxy") {
            Some(haproxy) => topologies.push(topology::haproxy(
                &haproxy,
                dir.path(),
                &certs,
                upstream.addr,
                Wrappers::default(),
            )),
            None => eprintln!("note: haproxy is not installed; its pair is left out"),
        }
        topologies.push(topology::nginx(
            &nginx,
            dir.path(),
            &certs,
            upstream.addr,
            Wrappers::default(),
        ));
    }
    // Give every process time to listen.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut rows: Vec<Row> = topologies.iter().map(|t| Row::new(t.name)).collect();
    for run in 1..=args.runs {
        // Each run visits the topologies in a different order, so that a noisy moment
        // does not always land on the same one.
        let order: Vec<usize> = (0..topologies.len())
            .map(|i| (i + run - 1) % topologies.len())
            .collect();
        for i in order {
            let sample = measure(&topologies[i], &args).await;
            eprintln!("run {run} {}: {}", topologies[i].name, sample.brief());
            if sample.errors > 0 {
                eprintln!(
                    "{} failed requests; its proxies said:\n{}",
                    topologies[i].name,
                    topologies[i].logs()
                );
            }
            rows[i].samples.push(sample);
        }
    }
    for (row, topology) in rows.iter_mut().zip(&topologies) {
        let most =
            load::closed_loop(&topology.target, args.duration / 2, args.max_connections).await;
        row.max_rps = most.ok as f64 / most.elapsed.as_secs_f64();
        eprintln!("{}: {:.0} req/s at most", topology.name, row.max_rps);
    }
    let ready = start_to_ready().await;
    println!("{}", report::markdown(&rows, &args_line(&args), &ready));
    if std::env::var_os("MESHBENCH_KEEP").is_some() {
        // Stop the processes first, so their logs are complete.
        drop(topologies);
        let _kept = dir.keep();
    }
}

async fn measure(topology: &Topology, args: &Args) -> Sample {
    // A short warm-up at the same rate: connections, TLS sessions, pools.
    load::open_loop(
        &topology.target,
        args.rate,
        Duration::from_secs(1),
        args.connections,
    )
    .await;
    let before: Vec<Duration> = topology
        .proxies
        .iter()
        .map(|(_, pid)| procstat::cpu(*pid))
        .collect();
    let outcome =
        load::open_loop(&topology.target, args.rate, args.duration, args.connections).await;
    let cpu: Vec<Duration> = topology
        .proxies
        .iter()
        .zip(&before)
        .map(|((_, pid), before)| procstat::cpu(*pid).saturating_sub(*before))
        .collect();
    let memory: Vec<(u64, u64)> = topology
        .proxies
        .iter()
        .map(|(_, pid)| (procstat::rss(*pid), procstat::rss_anon(*pid)))
        .collect();
    Sample::new(&outcome, &cpu, &memory)
}

fn args_line(args: &Args) -> String {
    format!(
        "{} req/s for {} s over {} connections (HTTP/1.1 keep-alive, open loop), {} runs; max throughput: closed loop, {} connections",
        args.rate,
        args.duration.as_secs(),
        args.connections,
        args.runs,
        args.max_connections
    )
}

/// Start → ready of a sidecar (certificate and config held), 5 times.
async fn start_to_ready() -> Vec<Duration> {
    let mut mesh = outrigger_tests::Mesh::new();
    mesh.add_service(
        "bench",
        "server",
        "bench/server",
        &[outrigger_tests::loopback(outrigger_tests::free_port())],
    );
    mesh.start_control_plane().await;
    let mut times = Vec::new();
    for _ in 0..5 {
        times.push(topology::start_to_ready(&mesh).await);
    }
    times
}
