//! The circuit breaker at run time. Requests only read a gate (one atomic) and drop their
//! outcome into a bounded channel; a task per endpoint runs the [`Breaker`] state machine
//! off the request path, opens and closes the gate, and wakes the endpoint to half-open
//! when its ejection ends. A service's endpoints share an [`EjectionCap`] so that no more
//! than `maxEjectedPercent` of them are ever out at once.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::breaker::{Breaker, BreakerConfig, State, Trip, may_eject};

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;
/// Half-open with its one probe in flight.
const PROBING: u8 = 3;

/// Outcomes waiting for the breaker task; beyond this a sample is dropped rather than
/// slowing a request.
const OUTCOME_QUEUE: usize = 1024;

/// Shared by a service's endpoints: how many are ejected, of how many.
#[derive(Debug, Default)]
pub(crate) struct EjectionCap {
    ejected: AtomicUsize,
    total: AtomicUsize,
    max_percent: AtomicU32,
}

impl EjectionCap {
    pub(crate) fn new(total: usize, max_percent: u32) -> Arc<Self> {
        let cap = Arc::new(EjectionCap::default());
        cap.update(total, max_percent);
        cap
    }

    /// New endpoint count or percentage (a snapshot changed the service).
    pub(crate) fn update(&self, total: usize, max_percent: u32) {
        self.total.store(total, Ordering::Relaxed);
        self.max_percent.store(max_percent, Ordering::Relaxed);
    }

    fn try_take(&self) -> bool {
        let (total, max) = (
            self.total.load(Ordering::Relaxed),
            self.max_percent.load(Ordering::Relaxed),
        );
        self.ejected
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |ejected| {
                may_eject(ejected, total, max).then_some(ejected + 1)
            })
            .is_ok()
    }

    fn release(&self) {
        let _ = self
            .ejected
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    #[cfg(test)]
    pub(crate) fn ejected(&self) -> usize {
        self.ejected.load(Ordering::Relaxed)
    }
}

/// Counters for `/metrics`, shared by the breakers of a proxy.
#[derive(Debug, Default)]
pub(crate) struct CircuitMetrics {
    /// Trips seen, enforced or not.
    pub detected: Counter,
    /// Trips that ejected an endpoint.
    pub enforced: Counter,
}

/// What `/circuits` shows about one endpoint.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct CircuitReport {
    pub endpoint: String,
    pub state: &'static str,
    pub consecutive_failures: u32,
    pub ejections: u32,
    /// Unix seconds, while open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ejected_until: Option<u64>,
    /// Why it last opened (or why an ejection was refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// One endpoint's breaker as the request path sees it.
#[derive(Debug)]
pub(crate) struct Circuit {
    gate: AtomicU8,
    outcomes: mpsc::Sender<bool>,
    report: Mutex<CircuitReport>,
}

impl Circuit {
    /// Starts the endpoint's breaker task; it ends when the circuit is dropped.
    pub(crate) fn spawn(
        addr: SocketAddr,
        config: BreakerConfig,
        cap: Arc<EjectionCap>,
        metrics: Arc<CircuitMetrics>,
    ) -> Arc<Circuit> {
        let (tx, rx) = mpsc::channel(OUTCOME_QUEUE);
        let circuit = Arc::new(Circuit {
            gate: AtomicU8::new(CLOSED),
            outcomes: tx,
            report: Mutex::new(CircuitReport {
                endpoint: addr.to_string(),
                state: "closed",
                ..CircuitReport::default()
            }),
        });
        tokio::spawn(run(Arc::downgrade(&circuit), rx, config, cap, metrics));
        circuit
    }

    /// Whether the balancer may consider this endpoint (closed, or half-open and free
    /// for its probe).
    pub(crate) fn is_usable(&self) -> bool {
        matches!(self.gate.load(Ordering::Acquire), CLOSED | HALF_OPEN)
    }

    /// Claims passage for a request to the picked endpoint: always when closed; when
    /// half-open, only the one request that becomes the probe.
    pub(crate) fn try_pass(&self) -> bool {
        match self.gate.load(Ordering::Acquire) {
            CLOSED => true,
            HALF_OPEN => self
                .gate
                .compare_exchange(HALF_OPEN, PROBING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok(),
            _ => false,
        }
    }

    /// Reports a finished request; never waits.
    pub(crate) fn record(&self, success: bool) {
        let _ = self.outcomes.try_send(success);
    }

    pub(crate) fn report(&self) -> CircuitReport {
        self.report.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

async fn run(
    circuit: std::sync::Weak<Circuit>,
    mut outcomes: mpsc::Receiver<bool>,
    config: BreakerConfig,
    cap: Arc<EjectionCap>,
    metrics: Arc<CircuitMetrics>,
) {
    // A probe that never answers must not leave the endpoint half-open forever.
    let probe_timeout = config.base_ejection.max(Duration::from_secs(1));
    let mut breaker = Breaker::new(config, Instant::now());
    let mut holds_cap = false;
    let mut wake: Option<Instant> = None;
    loop {
        let outcome = tokio::select! {
            outcome = outcomes.recv() => match outcome {
                Some(outcome) => Some(outcome),
                None => break,
            },
            () = sleep_until(wake) => None,
        };
        let Some(circuit) = circuit.upgrade() else {
            break;
        };
        let now = Instant::now();
        let why = match outcome {
            None if breaker.tick(now) => {
                circuit.gate.store(HALF_OPEN, Ordering::Release);
                wake = Some(now + probe_timeout);
                publish(&circuit, &breaker, None, None);
                continue;
            }
            // The probe took too long: a failure.
            None if breaker.state() == State::HalfOpen => Some(Trip::ProbeFailed),
            None => None,
            Some(success) => {
                let was_half_open = breaker.state() == State::HalfOpen;
                let trip = breaker.record(success, now);
                if was_half_open && breaker.state() == State::Closed {
                    circuit.gate.store(CLOSED, Ordering::Release);
                    wake = None;
                    if holds_cap {
                        cap.release();
                        holds_cap = false;
                    }
                    tracing::info!(endpoint = %circuit.report().endpoint, "circuit closed: probe succeeded");
                }
                trip
            }
        };
        if let Some(trip) = why {
            metrics.detected.inc();
            // A failed probe keeps its place under the cap; a new ejection needs one.
            let allowed = holds_cap || cap.try_take();
            if allowed {
                holds_cap = true;
                let until = breaker.eject(now);
                circuit.gate.store(OPEN, Ordering::Release);
                wake = Some(until);
                metrics.enforced.inc();
                tracing::warn!(endpoint = %circuit.report().endpoint, reason = %trip, ejected_for = ?(until - now), "circuit opened");
                publish(
                    &circuit,
                    &breaker,
                    Some(until - now),
                    Some(trip.to_string()),
                );
            } else {
                breaker.decline(now);
                circuit.gate.store(CLOSED, Ordering::Release);
                tracing::debug!(endpoint = %circuit.report().endpoint, reason = %trip, "ejection refused: too many endpoints already ejected");
                publish(
                    &circuit,
                    &breaker,
                    None,
                    Some(format!("{trip} (not ejected: maxEjectedPercent reached)")),
                );
            }
        } else {
            publish(&circuit, &breaker, None, None);
        }
    }
    if holds_cap {
        cap.release();
    }
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Updates what `/circuits` shows. `open_for` is set when an ejection starts; `why`
/// when there is a new reason to show.
fn publish(circuit: &Circuit, breaker: &Breaker, open_for: Option<Duration>, why: Option<String>) {
    let Ok(mut report) = circuit.report.lock() else {
        return;
    };
    let open = matches!(breaker.state(), State::Open { .. });
    report.state = match breaker.state() {
        State::Closed => "closed",
        State::Open { .. } => "open",
        State::HalfOpen => "half-open",
    };
    report.consecutive_failures = breaker.consecutive_failures();
    report.ejections = breaker.ejections();
    if let Some(open_for) = open_for {
        report.ejected_until = (SystemTime::now() + open_for)
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()
            .map(|t| t.as_secs());
    } else if !open {
        report.ejected_until = None;
    }
    if why.is_some() {
        report.why = why;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: Some(2),
            failure_rate: None,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(60),
        }
    }

    /// Lets the breaker tasks run.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_half_opens_probes_and_closes() {
        let cap = EjectionCap::new(2, 50);
        let metrics = Arc::new(CircuitMetrics::default());
        let circuit = Circuit::spawn(
            "127.0.0.1:1".parse().unwrap(),
            config(),
            cap.clone(),
            metrics.clone(),
        );
        circuit.record(false);
        circuit.record(false);
        settle().await;
        assert!(!circuit.is_usable());
        assert_eq!(circuit.report().state, "open");
        assert_eq!(cap.ejected(), 1);

        tokio::time::advance(Duration::from_secs(10)).await;
        settle().await;
        assert!(circuit.is_usable(), "half-open");
        assert!(circuit.try_pass(), "the probe");
        assert!(!circuit.try_pass(), "only one probe");
        circuit.record(true);
        settle().await;
        assert_eq!(circuit.report().state, "closed");
        assert!(circuit.try_pass() && circuit.try_pass());
        assert_eq!(cap.ejected(), 0);
        assert_eq!(metrics.enforced.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_cap_keeps_half_the_endpoints_in() {
        let cap = EjectionCap::new(2, 50);
        let metrics = Arc::new(CircuitMetrics::default());
        let a = Circuit::spawn(
            "127.0.0.1:1".parse().unwrap(),
            config(),
            cap.clone(),
            metrics.clone(),
        );
        let b = Circuit::spawn(
            "127.0.0.1:2".parse().unwrap(),
            config(),
            cap.clone(),
            metrics.clone(),
        );
        for circuit in [&a, &b] {
            circuit.record(false);
            circuit.record(false);
        }
        settle().await;
        assert!(!a.is_usable());
        assert!(b.is_usable(), "the second ejection is refused");
        assert!(b.report().why.unwrap().contains("maxEjectedPercent"));
        assert_eq!(metrics.detected.get(), 2);
        assert_eq!(metrics.enforced.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_or_silent_probe_ejects_again_for_longer() {
        let cap = EjectionCap::new(1, 100);
        let circuit = Circuit::spawn(
            "127.0.0.1:1".parse().unwrap(),
            config(),
            cap,
            Arc::default(),
        );
        circuit.record(false);
        circuit.record(false);
        settle().await;
        tokio::time::advance(Duration::from_secs(10)).await;
        settle().await;
        assert!(circuit.try_pass());
        circuit.record(false);
        settle().await;
        assert_eq!(circuit.report().ejections, 2);
        // 20s this time; then the probe never answers: after the probe timeout, a third.
        tokio::time::advance(Duration::from_secs(20)).await;
        settle().await;
        assert!(circuit.try_pass());
        tokio::time::advance(Duration::from_secs(10)).await;
        settle().await;
        assert_eq!(circuit.report().state, "open");
        assert_eq!(circuit.report().ejections, 3);
    }
}
