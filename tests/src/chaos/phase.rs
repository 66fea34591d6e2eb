//! The faults, one per phase: what each does to the stage and mends again, what it is
//! run with (certificate lifetime, TrafficPolicy), and which failures it may explain.

use std::collections::BTreeMap;
use std::time::Duration;

use outrigger_certs::unix_now;

use super::Settings;
use super::stage::Stage;
use crate::faults::Fault;
use crate::process::{START_LIMIT, eventually};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    KillApp,
    KillSidecar,
    StopSidecar,
    StopApp,
    Flaky503,
    Flaky503Retried,
    ControlPlaneOutage,
    CertificateRotation,
    AnchorRotation,
    PolicyChurn,
}

/// What a phase found besides the load's counts: notes for the table, and numbers a test
/// may check (such as how many certificates each sidecar went through).
#[derive(Debug, Default)]
pub struct Findings {
    pub notes: Vec<String>,
    pub facts: BTreeMap<&'static str, u64>,
}

/// The retry conditions of the default policy, and 503 besides.
const RETRY_503: &str = "  retries: {retryOn: [connect-failure, refused-stream, reset, \"503\"]}\n";

/// The policies the churn phase cycles through; `None` removes the file (the defaults).
const CHURN: [Option<&str>; 4] = [
    Some("  loadBalancer: round-robin\n  timeouts: {request: 10s}\n"),
    Some(
        "  loadBalancer: least-request\n  retries: {attempts: 2}\n  circuitBreaker: {consecutiveFailures: 6}\n",
    ),
    Some("  loadBalancer: peak-ewma\n  bulkhead: {maxConcurrentRequests: 1000}\n"),
    None,
];

impl Phase {
    pub const ALL: [Phase; 10] = [
        Phase::KillApp,
        Phase::KillSidecar,
        Phase::StopSidecar,
        Phase::StopApp,
        Phase::Flaky503,
        Phase::Flaky503Retried,
        Phase::ControlPlaneOutage,
        Phase::CertificateRotation,
        Phase::AnchorRotation,
        Phase::PolicyChurn,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::KillApp => "kill-app",
            Phase::KillSidecar => "kill-sidecar",
            Phase::StopSidecar => "stop-sidecar",
            Phase::StopApp => "stop-app",
            Phase::Flaky503 => "flaky-503",
            Phase::Flaky503Retried => "flaky-503-retried",
            Phase::ControlPlaneOutage => "control-plane-outage",
            Phase::CertificateRotation => "certificate-rotation",
            Phase::AnchorRotation => "anchor-rotation",
            Phase::PolicyChurn => "policy-churn",
        }
    }

    pub fn by_name(name: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The fault, in a line of the table.
    pub fn describe(self, s: &Settings) -> String {
        let fault = secs(s.fault);
        match self {
            Phase::KillApp => {
                format!(
                    "SIGKILL the busiest instance's app (its sidecar stays up); restarted after {fault}"
                )
            }
            Phase::KillSidecar => {
                format!(
                    "SIGKILL the busiest instance's sidecar (its app stays up); restarted after {fault}"
                )
            }
            Phase::StopSidecar => format!("SIGSTOP instance 2's sidecar; SIGCONT after {fault}"),
            Phase::StopApp => format!("SIGSTOP instance 0's app; SIGCONT after {fault}"),
            Phase::Flaky503 => format!(
                "the busiest instance's app answers 503 to half its requests for {fault}; default policy"
            ),
            Phase::Flaky503Retried => {
                "the same, with retryOn: [connect-failure, refused-stream, reset, \"503\"]"
                    .to_string()
            }
            Phase::ControlPlaneOutage => format!(
                "SIGKILL the control plane; started again after {}",
                secs(s.control_plane_outage)
            ),
            Phase::CertificateRotation => format!(
                "workload certificates of {} (renewed at 70% of their life) for {}",
                secs(s.rotation_ttl),
                secs(s.rotation)
            ),
            Phase::AnchorRotation => format!(
                "ca rotate start, issuer, finish --force; certificates of {}",
                secs(s.anchor_ttl)
            ),
            Phase::PolicyChurn => format!(
                "payments' TrafficPolicy rewritten {}×/s for {} (4 variants, one removes it)",
                s.churn_per_second,
                secs(s.churn)
            ),
        }
    }

    /// The workload certificate lifetime the phase's control plane issues.
    pub(super) fn cert_ttl(self, s: &Settings) -> String {
        match self {
            Phase::CertificateRotation => format!("{}s", s.rotation_ttl.as_secs()),
            Phase::AnchorRotation => format!("{}s", s.anchor_ttl.as_secs()),
            _ => "24h".to_string(),
        }
    }

    /// The payments TrafficPolicy the phase starts with (none: every default).
    pub(super) fn traffic_policy(self) -> Option<&'static str> {
        match self {
            Phase::Flaky503Retried => Some(RETRY_503),
            _ => None,
        }
    }

    /// Why failures of `cause` are expected in this phase, if they are: the default
    /// policy cannot save them. Any other failure misses the target of none.
    pub fn explains(self, cause: &str) -> Option<&'static str> {
        match (self, cause) {
            (Phase::Flaky503, "503 (app)") => Some(
                "the default retryOn (connect-failure, refused-stream, reset) leaves an app's 503 alone; \
                 the breaker (5 consecutive failures) ejects the instance now and then",
            ),
            (Phase::KillApp | Phase::KillSidecar, "truncated 200") => Some(
                "the response head had left the instance before the kill cut its body off, and \
                 the caller's sidecar passes a head on before its body is complete, so the try \
                 can no longer be retried (the write/hold behaviour of issue 12)",
            ),
            _ => None,
        }
    }

    /// Does the fault and mends it; what it found besides the load's counts.
    pub(super) async fn inject(self, stage: &mut Stage, s: &Settings) -> Findings {
        let mut found = Findings::default();
        match self {
            // The busiest instance, as for flaky-503: a fixed one may be out of the
            // balancer's rotation (a run on a loaded machine killed instance 0's app and
            // saw no request retried).
            Phase::KillApp => {
                let killed = stage.busiest_instance().await;
                stage.apps[killed].process.kill();
                tokio::time::sleep(s.fault).await;
                stage.apps[killed].restart().await;
            }
            Phase::KillSidecar => {
                let killed = stage.busiest_instance().await;
                stage.instances[killed].process.kill();
                tokio::time::sleep(s.fault).await;
                stage.restart_sidecar(killed).await;
            }
            Phase::StopSidecar => {
                stage.instances[2].process.signal("STOP");
                tokio::time::sleep(s.fault).await;
                stage.instances[2].process.signal("CONT");
            }
            Phase::StopApp => {
                stage.apps[0].process.signal("STOP");
                tokio::time::sleep(s.fault).await;
                stage.apps[0].process.signal("CONT");
            }
            Phase::Flaky503 | Phase::Flaky503Retried => {
                let half = Fault {
                    rate: Some(0.5),
                    ..Fault::status(503)
                };
                let flaky = stage.busiest_instance().await;
                stage.apps[flaky].set_fault(&half).await;
                tokio::time::sleep(s.fault).await;
                stage.apps[flaky].set_fault(&Fault::default()).await;
            }
            Phase::ControlPlaneOutage => {
                let before = stage.mesh.config_version().await;
                stage.mesh.kill_control_plane();
                tokio::time::sleep(s.control_plane_outage).await;
                stage.mesh.start_control_plane().await;
                wait_converged(stage).await;
                found.notes.push(format!(
                    "after the restart every sidecar applied version {} (before: {before})",
                    stage.mesh.config_version().await
                ));
            }
            Phase::CertificateRotation => {
                let fewest = watch_certificates(stage, s.rotation).await;
                found.facts.insert("fewest certificates", fewest);
                found
                    .notes
                    .push(format!("every sidecar held at least {fewest} certificates"));
            }
            Phase::AnchorRotation => anchor_rotation(stage, s, &mut found).await,
            Phase::PolicyChurn => {
                let before = stage.mesh.config_version().await;
                let writes = churn(stage, s).await;
                let after = stage.mesh.converged_past(before).await;
                found.facts.insert("writes", writes);
                found.facts.insert("versions", after - before);
                found.notes.push(format!(
                    "{writes} writes became {} config versions, all applied",
                    after - before
                ));
            }
        }
        found
    }
}

/// "5 s", for the table.
fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs())
}

/// Waits until every connected sidecar runs the served version.
async fn wait_converged(stage: &Stage) {
    eventually("the sidecars converge", START_LIMIT, || async {
        stage.mesh.status().await["converged"] == true
    })
    .await;
}

/// Every sidecar's certificate expiry, polled for `how_long`; the fewest distinct
/// certificates any one of them held.
async fn watch_certificates(stage: &Stage, how_long: Duration) -> u64 {
    let sidecars: Vec<_> = std::iter::once(&stage.orders)
        .chain(stage.instances.iter())
        .collect();
    let mut seen = vec![std::collections::BTreeSet::new(); sidecars.len()];
    let until = tokio::time::Instant::now() + how_long;
    while tokio::time::Instant::now() < until {
        for (sidecar, seen) in sidecars.iter().zip(seen.iter_mut()) {
            seen.insert(sidecar.certificate_expiry().await);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    seen.iter().map(|s| s.len() as u64).min().unwrap_or(0)
}

/// The three steps of docs/ca-rotation.md, each waited for as an operator would.
async fn anchor_rotation(stage: &Stage, s: &Settings, found: &mut Findings) {
    let mesh = &stage.mesh;
    let before = mesh.config_version().await;
    mesh.rotate_anchor(&["start"]);
    let both = mesh.converged_past(before).await;
    mesh.rotate_anchor(&["issuer"]);
    // Certificates issued two seconds after the step are surely the new issuer's.
    let renewed = unix_now() + s.anchor_ttl.as_secs() as i64 + 2;
    for sidecar in std::iter::once(&stage.orders).chain(stage.instances.iter()) {
        sidecar.wait_certificate_until(renewed).await;
    }
    mesh.rotate_anchor(&["finish", "--force"]);
    let after = mesh.converged_past(both).await;
    found.notes.push(format!(
        "two anchors at version {both}, the new one alone at {after}; every sidecar renewed under the new issuer"
    ));
    // Traffic on the new anchor alone for a while.
    tokio::time::sleep(Duration::from_secs(2)).await;
}

/// Rewrites the payments TrafficPolicy `churn_per_second` times a second for `churn`;
/// returns how many writes it made.
async fn churn(stage: &Stage, s: &Settings) -> u64 {
    let every = Duration::from_secs(1) / s.churn_per_second.max(1);
    let writes = s.churn.as_millis() as u64 / every.as_millis().max(1) as u64;
    let mut tick = tokio::time::interval(every);
    let file = stage.mesh.policy_dir().join("shop-payments-traffic.yaml");
    for i in 0..writes {
        tick.tick().await;
        match CHURN[i as usize % CHURN.len()] {
            Some(spec) => stage.mesh.traffic_policy("shop", "payments", spec),
            None => {
                let _ = std::fs::remove_file(&file);
            }
        }
    }
    writes
}
