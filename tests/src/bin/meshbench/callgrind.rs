//! Instructions per request, each side of each pair, under `valgrind --tool=callgrind`:
//! the difference between a run of 300 and a run of 1,300 sequential requests, divided
//! by 1,000, so that start-up and shutdown cancel out. Unlike time, the count repeats on
//! a noisy machine, so it is how each optimisation is judged.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::load::{self, Target};
use crate::peers::{HopCerts, Wrappers};
use crate::topology::{self, Topology};

/// The pairs measured.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Pair {
    Outrigger,
    Haproxy,
    Nginx,
}

impl Pair {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Pair::Outrigger => "outrigger",
            Pair::Haproxy => "haproxy",
            Pair::Nginx => "nginx",
        }
    }
}

/// Where the programs are, and the pieces every pair shares.
pub(crate) struct Setup<'a> {
    pub(crate) dir: &'a Path,
    pub(crate) certs: &'a HopCerts,
    pub(crate) upstream: SocketAddr,
    pub(crate) nginx: &'a Path,
    pub(crate) haproxy: Option<&'a Path>,
}

const SHORT: u64 = 300;
const LONG: u64 = 1_300;

/// Instructions per request of (outbound, inbound) of `pair`.
pub(crate) async fn per_request(pair: Pair, setup: &Setup<'_>) -> Option<(f64, f64)> {
    let outbound = side(pair, setup, true).await?;
    let inbound = side(pair, setup, false).await?;
    Some((outbound, inbound))
}

async fn side(pair: Pair, setup: &Setup<'_>, outbound: bool) -> Option<f64> {
    let mut totals = Vec::new();
    for requests in [SHORT, LONG] {
        let side = if outbound { "outbound" } else { "inbound" };
        let out = setup
            .dir
            .join(format!("callgrind-{}-{side}-{requests}.out", pair.name()));
        let wrapper = vec![
            "valgrind".to_string(),
            "--tool=callgrind".to_string(),
            format!("--callgrind-out-file={}", out.display()),
        ];
        let none: Vec<String> = Vec::new();
        let wrappers = if outbound {
            Wrappers {
                outbound: &wrapper,
                inbound: &none,
            }
        } else {
            Wrappers {
                outbound: &none,
                inbound: &wrapper,
            }
        };
        let mut topology = build(pair, setup, wrappers).await?;
        answering(&topology.target).await;
        load::sequential(&topology.target, requests).await;
        topology.stop();
        totals.push(total_instructions(&out)?);
    }
    Some((totals[1].saturating_sub(totals[0])) as f64 / (LONG - SHORT) as f64)
}

async fn build(pair: Pair, setup: &Setup<'_>, wrappers: Wrappers<'_>) -> Option<Topology> {
    Some(match pair {
        Pair::Outrigger => topology::outrigger(setup.upstream, wrappers).await,
        Pair::Haproxy => topology::haproxy(
            setup.haproxy?,
            setup.dir,
            setup.certs,
            setup.upstream,
            wrappers,
        ),
        Pair::Nginx => topology::nginx(
            setup.nginx,
            setup.dir,
            setup.certs,
            setup.upstream,
            wrappers,
        ),
    })
}

/// Waits until one request gets through (a program under valgrind starts slowly).
async fn answering(target: &Target) {
    let started = Instant::now();
    while load::sequential(target, 1).await.ok == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the pair under callgrind never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `totals:` (or `summary:`) line of a callgrind output file: instructions executed.
fn total_instructions(file: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .find_map(|line| {
            line.strip_prefix("totals:")
                .or_else(|| line.strip_prefix("summary:"))
        })
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}
