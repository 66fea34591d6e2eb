//! The chaos run: a constant open-loop load of idempotent GETs to a service of three
//! instances, through the caller's sidecar, while one fault after another is done to
//! the mesh. Each phase gets a fresh mesh ([`stage`]), so that what one fault leaves
//! behind (an ejected endpoint, a breaker still counting) cannot be blamed on the next,
//! and reports what its requests came to, by cause ([`report`]).
//!
//! The program is `tests/src/bin/chaos.rs`; its short form is `tests/tests/chaos.rs`.

mod phase;
mod report;
mod stage;

use std::path::PathBuf;
use std::time::Duration;

use crate::open_loop::{Load, OpenLoop};

pub use phase::{Findings, Phase};
pub use report::{CallerCounters, PhaseReport, markdown};
pub use stage::{INSTANCES, Stage};

/// How hard and how long.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Requests a second, constant throughout.
    pub rate: u64,
    /// Load before the fault, so that connections, pools and estimates are warm.
    pub warm_up: Duration,
    /// How long a killed, stopped or failing instance stays so.
    pub fault: Duration,
    /// How long the control plane stays dead.
    pub control_plane_outage: Duration,
    /// How long certificates keep rotating, and their lifetime meanwhile.
    pub rotation: Duration,
    pub rotation_ttl: Duration,
    /// Workload certificate lifetime in the anchor rotation (every sidecar renews under
    /// the new issuer before the old anchor goes).
    pub anchor_ttl: Duration,
    /// How long the policy is rewritten, and how often a second.
    pub churn: Duration,
    pub churn_per_second: u32,
    /// After the fault is mended: wait for every breaker to close again (up to
    /// [`Settings::recovery`]), or just go on this long.
    pub wait_for_closed_circuits: bool,
    pub recovery: Duration,
    /// A request with no whole answer after this is a client timeout.
    pub client_timeout: Duration,
    /// Where each phase's process logs are copied, if anywhere.
    pub keep_logs: Option<PathBuf>,
}

impl Settings {
    /// The form CI runs: about two minutes at a rate a shared machine carries.
    pub fn short() -> Settings {
        Settings {
            rate: 50,
            warm_up: Duration::from_secs(2),
            fault: Duration::from_secs(5),
            control_plane_outage: Duration::from_secs(8),
            rotation: Duration::from_secs(10),
            rotation_ttl: Duration::from_secs(3),
            anchor_ttl: Duration::from_secs(4),
            churn: Duration::from_secs(5),
            churn_per_second: 20,
            wait_for_closed_circuits: false,
            recovery: Duration::from_secs(2),
            client_timeout: Duration::from_secs(20),
            keep_logs: None,
        }
    }

    /// The form recorded in docs/reliability.md.
    pub fn long() -> Settings {
        Settings {
            rate: 200,
            warm_up: Duration::from_secs(5),
            fault: Duration::from_secs(30),
            control_plane_outage: Duration::from_secs(60),
            rotation: Duration::from_secs(60),
            rotation_ttl: Duration::from_secs(14),
            anchor_ttl: Duration::from_secs(14),
            churn: Duration::from_secs(10),
            churn_per_second: 20,
            wait_for_closed_circuits: true,
            recovery: Duration::from_secs(90),
            client_timeout: Duration::from_secs(60),
            keep_logs: None,
        }
    }
}

/// Runs `phases` one after the other, each on a fresh stage.
pub async fn run(settings: &Settings, phases: &[Phase]) -> Vec<PhaseReport> {
    let mut reports = Vec::new();
    for phase in phases {
        eprintln!("chaos: {} ...", phase.name());
        let report = run_phase(settings, *phase).await;
        eprintln!("chaos: {}", report.brief());
        reports.push(report);
    }
    reports
}

async fn run_phase(settings: &Settings, phase: Phase) -> PhaseReport {
    let mut stage = Stage::start(&phase.cert_ttl(settings), phase.traffic_policy()).await;
    // Connections unbounded: a request held by a hung instance must not hold up the
    // ones due after it.
    let load = Load {
        rate: settings.rate,
        timeout: settings.client_timeout,
        connections: None,
    };
    let load = OpenLoop::start(stage.target(), &load, "warm-up");
    tokio::time::sleep(settings.warm_up).await;
    load.begin("fault");
    let mut findings = phase.inject(&mut stage, settings).await;
    load.begin("recovery");
    let recovered_in = recover(&stage, settings).await;
    let periods = load.stop().await;
    let counters = report::CallerCounters::read(&stage).await;
    if let Some(dir) = &settings.keep_logs {
        stage.keep_logs(&dir.join(phase.name()));
    }
    if settings.wait_for_closed_circuits && recovered_in.is_none() {
        findings.notes.push(format!(
            "breakers still open {} s after the fault was mended",
            settings.recovery.as_secs()
        ));
    }
    PhaseReport::new(phase, settings, &periods, counters, recovered_in, findings)
}

/// Lets the load go on after the fault is mended: until every breaker of the caller is
/// closed again (the time it took), or for the fixed recovery time.
async fn recover(stage: &Stage, settings: &Settings) -> Option<Duration> {
    if !settings.wait_for_closed_circuits {
        tokio::time::sleep(settings.recovery).await;
        return None;
    }
    let started = tokio::time::Instant::now();
    while started.elapsed() < settings.recovery {
        if stage.all_circuits_closed().await {
            let closed_after = started.elapsed();
            // A little more load with the instance back, so that its share is measured too.
            tokio::time::sleep(Duration::from_secs(2)).await;
            return Some(closed_after);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}
