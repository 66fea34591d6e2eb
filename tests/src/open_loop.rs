//! A constant, open-loop load of GETs: request `i` is due at `start + i / rate` whatever
//! became of the ones before it, and goes out on an idle kept-alive connection or, when
//! none is idle, a new one. Unbounded, a hung upstream delays only the requests it holds,
//! never the schedule, so the load the mesh sees stays the same during a fault. With a
//! cap on connections (a soak wants a steady count of them), a request waits for a free
//! one. Each request is counted in the period ([`OpenLoop::begin`]) it was due in; its
//! latency runs from that due time, waits included.

mod get;
mod tally;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use get::{Connection, Outcome, Sent, connect, get};
pub use tally::{SLOW, Tally};

/// Where the requests go.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// The `Host` header (a sidecar routes by it).
    pub host: String,
    pub path: String,
}

/// How hard, and how the load treats the mesh.
#[derive(Clone, Debug)]
pub struct Load {
    /// Requests a second.
    pub rate: u64,
    /// A request with no whole answer after this counts as a client timeout.
    pub timeout: Duration,
    /// At most this many connections at once; `None`: a new one whenever none is idle.
    pub connections: Option<usize>,
}

/// A connection idle this long is closed rather than reused. A server may close an idle
/// connection just as a request leaves on it, and the request is then lost to the
/// client; clients avoid that race by letting idle connections go well before the
/// server's idle or header-read timeout would (hyper's default, which the sidecars use,
/// is 30 s; issue 12's hardening brings it to 10 s).
const IDLE_LIMIT: Duration = Duration::from_secs(2);

/// A running load; [`OpenLoop::stop`] ends it and returns its tallies.
pub struct OpenLoop {
    shared: Arc<Shared>,
    driver: tokio::task::JoinHandle<()>,
}

struct Shared {
    stop: AtomicBool,
    /// One per period; requests count in the last one at their due time.
    tallies: Mutex<Vec<Tally>>,
    /// Kept-alive connections and when each went idle, the freshest last.
    idle: Mutex<Vec<(Connection, Instant)>>,
    /// One permit per connection allowed, when they are capped.
    connections: Option<Arc<Semaphore>>,
}

impl Shared {
    fn period(&self) -> usize {
        self.tallies.lock().expect("tallies lock").len() - 1
    }

    /// The freshest idle connection, if one has not been idle too long; the stale ones
    /// are closed.
    fn take_idle(&self) -> Option<Connection> {
        let mut idle = self.idle.lock().expect("idle lock");
        idle.retain(|(_, since)| since.elapsed() < IDLE_LIMIT);
        idle.pop().map(|(connection, _)| connection)
    }
}

impl OpenLoop {
    /// Starts `load` to `target`, counting its requests in a first period called
    /// `label`.
    pub fn start(target: Target, load: &Load, label: &str) -> OpenLoop {
        assert!(load.rate > 0, "a rate of at least one request a second");
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            tallies: Mutex::new(vec![Tally::new(label)]),
            idle: Mutex::new(Vec::new()),
            connections: load.connections.map(|n| Arc::new(Semaphore::new(n.max(1)))),
        });
        let driver = tokio::spawn(drive(
            shared.clone(),
            target,
            Duration::from_secs_f64(1.0 / load.rate as f64),
            load.timeout,
        ));
        OpenLoop { shared, driver }
    }

    /// Requests due from now on count in a new period called `label`.
    pub fn begin(&self, label: &str) {
        self.shared
            .tallies
            .lock()
            .expect("tallies lock")
            .push(Tally::new(label));
    }

    /// The tallies so far (requests still in flight are not in them yet).
    pub fn tallies(&self) -> Vec<Tally> {
        self.shared.tallies.lock().expect("tallies lock").clone()
    }

    /// Stops sending, waits for the requests in flight (each ends by its timeout), and
    /// returns every period's tally.
    pub async fn stop(self) -> Vec<Tally> {
        let OpenLoop { shared, driver } = self;
        shared.stop.store(true, Ordering::SeqCst);
        driver.await.expect("the load's driver");
        shared.tallies.lock().expect("tallies lock").clone()
    }
}

async fn drive(shared: Arc<Shared>, target: Target, interval: Duration, timeout: Duration) {
    let start = Instant::now();
    let mut in_flight = JoinSet::new();
    for i in 0u64.. {
        let due = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due).await;
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let period = shared.period();
        in_flight.spawn(one(shared.clone(), target.clone(), due, period, timeout));
        // Reap the finished ones as we go, so that a long run holds only the live ones.
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
}

async fn one(shared: Arc<Shared>, target: Target, due: Instant, period: usize, limit: Duration) {
    let sent = async {
        // Held until the answer is read: the connection is busy until then.
        let _permit = match &shared.connections {
            Some(permits) => Some(permits.acquire().await.expect("never closed")),
            None => None,
        };
        send(&shared, &target).await
    };
    let outcome = tokio::time::timeout(limit, sent)
        .await
        .unwrap_or(Outcome::TimedOut);
    let latency = due.elapsed();
    shared.tallies.lock().expect("tallies lock")[period].record(&outcome, latency);
}

/// Sends one request, on an idle connection if there is one. A connection that turns
/// out to have closed before the request left is replaced; the request is not lost
/// to the client's own pooling.
async fn send(shared: &Shared, target: &Target) -> Outcome {
    // An idle connection, then (should it prove closed) a fresh one; a fresh connection
    // that closes before the request leaves is a failure of the target.
    for attempt in 0..3 {
        let idle = match attempt {
            0 => shared.take_idle(),
            _ => None,
        };
        let mut connection = match idle {
            Some(connection) => connection,
            None => match connect(target.addr).await {
                Ok(connection) => connection,
                Err(error) => return Outcome::Unreachable(error),
            },
        };
        match get(&mut connection, &target.host, &target.path).await {
            Sent::NotSent => continue,
            Sent::Done(outcome) => {
                if matches!(outcome, Outcome::Answered { .. }) && !connection.is_closed() {
                    let idle = (connection, Instant::now());
                    shared.idle.lock().expect("idle lock").push(idle);
                }
                return outcome;
            }
        }
    }
    Outcome::NoHead("every connection closed before the request could be sent".to_string())
}
