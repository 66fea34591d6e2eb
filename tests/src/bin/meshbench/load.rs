//! The load generator: HTTP/1.1 keep-alive connections driven open-loop at a constant
//! rate. Request `i` is due at `start + i / rate`. When the previous answer on its
//! connection came after that, its latency counts from the due time, not from when the
//! connection was free to send it: a stall shows in the latency of every request it
//! delayed (no coordinated omission). Otherwise it counts from when it was sent, so the
//! timer's own lateness (tokio's timers tick in milliseconds) is not charged to the
//! system measured. Latencies go into an HDR histogram.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use outrigger_tests::open_loop::{self, Connection, Sent};
use tokio::time::Instant;

/// What a run saw.
pub(crate) struct Outcome {
    /// Latency in microseconds, from each request's due time to its whole response.
    pub(crate) latency: Histogram<u64>,
    pub(crate) ok: u64,
    pub(crate) errors: u64,
    pub(crate) elapsed: Duration,
}

impl Outcome {
    pub(crate) fn percentile_ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }
}

/// Where to send, and as whom.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    /// The Host header (a sidecar routes by it).
    pub(crate) host: String,
}

/// `rate` requests per second for `duration`, over `connections` connections.
pub(crate) async fn open_loop(
    target: &Target,
    rate: u64,
    duration: Duration,
    connections: usize,
) -> Outcome {
    let total = rate * duration.as_secs_f64() as u64;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + Duration::from_millis(50);
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (target, next) = (target.clone(), next.clone());
            tokio::spawn(async move {
                let mut seen = Seen::new();
                let mut sender = None;
                let mut previous_done = start;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let due = start + interval * i as u32;
                    tokio::time::sleep_until(due).await;
                    let sent = Instant::now();
                    let ok = send(&target, &mut sender).await;
                    let from = if previous_done > due { due } else { sent };
                    previous_done = Instant::now();
                    seen.record(ok, previous_done - from);
                }
                seen
            })
        })
        .collect();
    gather(tasks, start).await
}

/// As many requests as `connections` connections can carry back to back, for `duration`.
pub(crate) async fn closed_loop(
    target: &Target,
    duration: Duration,
    connections: usize,
) -> Outcome {
    let start = Instant::now();
    let end = start + duration;
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let target = target.clone();
            tokio::spawn(async move {
                let mut seen = Seen::new();
                let mut sender = None;
                while Instant::now() < end {
                    let sent = Instant::now();
                    let ok = send(&target, &mut sender).await;
                    seen.record(ok, sent.elapsed());
                }
                seen
            })
        })
        .collect();
    gather(tasks, start).await
}

/// `count` requests one after the other on one connection.
pub(crate) async fn sequential(target: &Target, count: u64) -> Outcome {
    let start = Instant::now();
    let mut seen = Seen::new();
    let mut sender = None;
    for _ in 0..count {
        let sent = Instant::now();
        let ok = send(target, &mut sender).await;
        seen.record(ok, sent.elapsed());
    }
    Outcome {
        latency: seen.latency,
        ok: seen.ok,
        errors: seen.errors,
        elapsed: start.elapsed(),
    }
}

/// Sends one GET on the connection, opening it first if there is none (or it broke).
async fn send(target: &Target, sender: &mut Option<Connection>) -> bool {
    if sender.as_ref().is_none_or(|s| s.is_closed()) {
        *sender = open_loop::connect(target.addr).await.ok();
    }
    let Some(open) = sender.as_mut() else {
        return false;
    };
    match open_loop::get(open, &target.host, "/").await {
        Sent::Done(outcome) => {
            if !matches!(outcome, open_loop::Outcome::Answered { .. }) {
                *sender = None;
            }
            outcome.is_ok()
        }
        Sent::NotSent => {
            *sender = None;
            false
        }
    }
}

struct Seen {
    latency: Histogram<u64>,
    ok: u64,
    errors: u64,
}

impl Seen {
    fn new() -> Seen {
        Seen {
            latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
            ok: 0,
            errors: 0,
        }
    }

    fn record(&mut self, ok: bool, latency: Duration) {
        if ok {
            self.ok += 1;
            self.latency
                .saturating_record(latency.as_micros().max(1) as u64);
        } else {
            self.errors += 1;
        }
    }
}

async fn gather(tasks: Vec<tokio::task::JoinHandle<Seen>>, start: Instant) -> Outcome {
    let mut all = Seen::new();
    for task in tasks {
        let seen = task.await.expect("a load task");
        all.latency.add(&seen.latency).expect("same bounds");
        all.ok += seen.ok;
        all.errors += seen.errors;
    }
    Outcome {
        latency: all.latency,
        ok: all.ok,
        errors: all.errors,
        elapsed: start.elapsed(),
    }
}
