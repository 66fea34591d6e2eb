//! soak: a long, steady load through a sidecar pair, watching the sidecars' resources
//! for leaks (docs/reliability.md).
//!
//! ```sh
//! cargo build --release --bins
//! target/release/soak                      # 30 minutes at 1,000 req/s
//! target/release/soak --minutes 2 --warm-up-minutes 1 --rate 200
//! ```
//!
//! A client sidecar (the load's way in) and a server sidecar in front of an `echo-app`,
//! mutual TLS between them, the control plane running; 8 kept-alive connections carry the
//! load, open loop. Every 10 s it records each sidecar's RSS, open file descriptors,
//! threads and tokio tasks (`outrigger_runtime_alive_tasks`), and the requests of those
//! 10 s. After the warm-up, each quantity's level (the median of a minute's samples) must
//! stay within 10% of the first minute's.
//! Progress goes to stderr; the Markdown summary to stdout. Exits 1 if a quantity drifted
//! or a request failed.

mod sample;
mod verdict;

use std::process::ExitCode;
use std::time::Duration;

use outrigger_tests::open_loop::{Load, OpenLoop, Tally, Target};
use outrigger_tests::{AppProcess, Mesh, Sidecar, free_port, loopback};

use crate::sample::{Quantity, Sample};
use crate::verdict::{Series, TOLERANCE};

struct Args {
    minutes: u64,
    warm_up_minutes: u64,
    rate: u64,
    every: Duration,
}

fn parse() -> Args {
    let mut args = Args {
        minutes: 30,
        warm_up_minutes: 5,
        rate: 1000,
        every: Duration::from_secs(10),
    };
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        let mut number = || -> u64 {
            words
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage(&format!("{word} takes a number")))
        };
        match word.as_str() {
            "--minutes" => args.minutes = number(),
            "--warm-up-minutes" => args.warm_up_minutes = number(),
            "--rate" => args.rate = number(),
            "--every-seconds" => args.every = Duration::from_secs(number().max(1)),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    if args.warm_up_minutes >= args.minutes {
        usage("the warm-up must be shorter than the run");
    }
    args
}

fn usage(error: &str) -> ! {
    eprintln!("error: {error}");
    eprintln!(
        "usage: soak [--minutes 30] [--warm-up-minutes 5] [--rate 1000] [--every-seconds 10]"
    );
    std::process::exit(2);
}

/// The pair under test, and what keeps it running.
struct Pair {
    _mesh: Mesh,
    _app: AppProcess,
    client: Sidecar,
    server: Sidecar,
}

async fn start_pair() -> Pair {
    let port = free_port();
    let mut mesh = Mesh::new();
    mesh.add_service("soak", "server", "soak/server", &[loopback(port)]);
    mesh.start_control_plane().await;
    let app = AppProcess::start("server", mesh.root()).await;
    // Logging as in production: the harness's debug level would be measured too.
    let quiet = [("RUST_LOG", "warn")];
    let server = mesh.spawn_sidecar("server", "soak/server", Some(app.addr), port, &quiet);
    let client = mesh.spawn_sidecar("client", "soak/client", None, free_port(), &quiet);
    server.wait_ready().await;
    client.wait_ready().await;
    Pair {
        _mesh: mesh,
        _app: app,
        client,
        server,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = parse();
    let pair = start_pair().await;
    let target = Target {
        addr: pair.client.outbound,
        host: "server.soak".to_string(),
        path: "/".to_string(),
    };
    let load = Load {
        rate: args.rate,
        timeout: Duration::from_secs(10),
        connections: Some(8),
    };
    let running = OpenLoop::start(target, &load, "0");
    let samples_total = args.minutes * 60 / args.every.as_secs();
    let warm_up = (args.warm_up_minutes * 60 / args.every.as_secs()) as usize;
    eprintln!(
        "seconds,ok,failed,client rss MiB,fds,threads,tasks,server rss MiB,fds,threads,tasks"
    );
    let mut rows: Vec<(u64, Sample, Sample)> = Vec::new();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + args.every, args.every);
    for i in 1..=samples_total {
        tick.tick().await;
        let seconds = i * args.every.as_secs();
        running.begin(&seconds.to_string());
        let (client, server) = (
            sample::take(&pair.client).await,
            sample::take(&pair.server).await,
        );
        let tallies = running.tallies();
        let last = tallies.get(tallies.len().saturating_sub(2));
        eprintln!(
            "{seconds},{},{},{:.1},{},{},{},{:.1},{},{},{}",
            last.map_or(0, |t| t.ok),
            last.map_or(0, Tally::failed),
            Quantity::Rss.of(&client),
            client.fds,
            client.threads,
            client.tasks,
            Quantity::Rss.of(&server),
            server.fds,
            server.threads,
            server.tasks,
        );
        rows.push((seconds, client, server));
    }
    let periods = running.stop().await;
    let mut all = Tally::new("all");
    for period in &periods {
        all.absorb(period);
    }
    let after: Vec<_> = rows.iter().skip(warm_up).collect();
    let per_minute = (60 / args.every.as_secs()).max(1) as usize;
    let series: Vec<Series> = Quantity::ALL
        .iter()
        .flat_map(|q| {
            let client: Vec<Sample> = after.iter().map(|r| r.1).collect();
            let server: Vec<Sample> = after.iter().map(|r| r.2).collect();
            [
                Series::of("client", *q, &client, per_minute),
                Series::of("server", *q, &server, per_minute),
            ]
        })
        .flatten()
        .collect();
    println!("{}", report(&args, &all, &series, &rows));
    if all.failed() == 0 && series.iter().all(Series::flat) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn report(args: &Args, all: &Tally, series: &[Series], rows: &[(u64, Sample, Sample)]) -> String {
    let mut out = format!(
        "{} req/s for {} min over 8 connections, open loop; warm-up {} min; samples every {} s.\n\n\
         Requests: {} sent, {} ok, {} failed ({}); latency p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms.\n\n",
        args.rate,
        args.minutes,
        args.warm_up_minutes,
        args.every.as_secs(),
        all.sent,
        all.ok,
        all.failed(),
        all.causes(),
        all.percentile_ms(0.5),
        all.percentile_ms(0.99),
        all.max_ms(),
    );
    out.push_str(&format!(
        "Levels are medians of a minute's samples, after the warm-up.\n\n\
         | sidecar | quantity | first level | lowest | highest | last | largest departure | flat (≤ {:.0}%) | single samples |\n\
         |---|---|---:|---:|---:|---:|---:|---|---|\n",
        TOLERANCE * 100.0
    ));
    for s in series {
        out.push_str(&format!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1}% | {} | {:.1}–{:.1} |\n",
            s.sidecar,
            s.quantity.name(),
            s.reference,
            s.low,
            s.high,
            s.last,
            s.deviation() * 100.0,
            if s.flat() { "yes" } else { "**no**" },
            s.sample_min,
            s.sample_max,
        ));
    }
    // The series itself, thinned to about a dozen rows.
    let step = (rows.len() / 12).max(1);
    out.push_str(
        "\n| minute | client RSS MiB | fds | threads | tasks | server RSS MiB | fds | threads | tasks |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (seconds, client, server) in rows.iter().step_by(step) {
        out.push_str(&format!(
            "| {:.1} | {:.1} | {} | {} | {} | {:.1} | {} | {} | {} |\n",
            *seconds as f64 / 60.0,
            Quantity::Rss.of(client),
            client.fds,
            client.threads,
            client.tasks,
            Quantity::Rss.of(server),
            server.fds,
            server.threads,
            server.tasks,
        ));
    }
    out
}
