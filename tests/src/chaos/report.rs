//! What a phase came to, and the table of all of them: requests sent, failed and why,
//! what the caller's sidecar did about it (retries, ejections), and whether the phase met
//! its target: no failure that the policy could have saved.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Settings;
use super::phase::{Findings, Phase};
use super::stage::Stage;
use crate::open_loop::{SLOW, Tally};

/// The caller's sidecar's own counts for payments, over the phase's whole stage.
#[derive(Clone, Copy, Debug, Default)]
pub struct CallerCounters {
    pub retries: u64,
    pub budget_exhausted: u64,
    pub ejections: u64,
}

impl CallerCounters {
    pub(super) async fn read(stage: &Stage) -> CallerCounters {
        CallerCounters {
            retries: stage.caller_counter("outrigger_retries_total").await,
            budget_exhausted: stage
                .caller_counter("outrigger_retry_budget_exhausted_total")
                .await,
            ejections: stage.enforced_ejections().await,
        }
    }
}

#[derive(Debug)]
pub struct PhaseReport {
    pub phase: Phase,
    pub fault: String,
    /// Requests due from the fault on, to the end of the recovery.
    pub tally: Tally,
    /// Requests before the fault (a healthy mesh: none should fail).
    pub warm_up: Tally,
    pub caller: CallerCounters,
    /// How long after the fault was mended every breaker was closed again.
    pub recovered_in: Option<Duration>,
    pub findings: Findings,
}

impl PhaseReport {
    pub(super) fn new(
        phase: Phase,
        settings: &Settings,
        periods: &[Tally],
        caller: CallerCounters,
        recovered_in: Option<Duration>,
        findings: Findings,
    ) -> PhaseReport {
        let warm_up = periods
            .first()
            .cloned()
            .unwrap_or_else(|| Tally::new("warm-up"));
        let mut tally = Tally::new(phase.name());
        for period in periods.iter().skip(1) {
            tally.absorb(period);
        }
        PhaseReport {
            phase,
            fault: phase.describe(settings),
            tally,
            warm_up,
            caller,
            recovered_in,
            findings,
        }
    }

    /// Failures, by cause, that the phase does not explain: the target is none.
    pub fn unexplained(&self) -> BTreeMap<String, u64> {
        // A request due just before the fault may be answered after it: a warm-up
        // failure the phase's own fault explains is that race, not a loss.
        self.warm_up
            .failures
            .iter()
            .filter(|(cause, _)| self.phase.explains(cause).is_none())
            .map(|(cause, n)| (format!("{cause} (warm-up)"), *n))
            .chain(
                self.tally
                    .failures
                    .iter()
                    .filter(|(cause, _)| self.phase.explains(cause).is_none())
                    .map(|(cause, n)| (cause.clone(), *n)),
            )
            .collect()
    }

    pub fn met_target(&self) -> bool {
        self.unexplained().is_empty()
    }

    /// One line for the log.
    pub fn brief(&self) -> String {
        format!(
            "{}: {} sent, {} failed ({}), {} slow, {} retries; {}",
            self.phase.name(),
            self.tally.sent,
            self.tally.failed(),
            self.tally.causes(),
            self.tally.slow,
            self.caller.retries,
            if self.met_target() {
                "target met"
            } else {
                "TARGET MISSED"
            }
        )
    }
}

/// The table, then the notes: the examples of each transport error and what the phases
/// found.
pub fn markdown(reports: &[PhaseReport], settings: &Settings) -> String {
    let mut out = format!(
        "{} req/s of `GET /` through the caller's sidecar to 3 instances, open loop; \
         a phase counts the requests due from its fault to the end of its recovery.\n\n",
        settings.rate
    );
    out.push_str(&format!(
        "| phase | fault | sent | failed | why | retries | slow (> {} s) | p99 / max ms | breakers closed again | target |\n",
        SLOW.as_secs()
    ));
    out.push_str("|---|---|---:|---:|---|---:|---:|---:|---|---|\n");
    for r in reports {
        let recovered = match (r.recovered_in, settings.wait_for_closed_circuits) {
            (Some(after), _) => format!("after {:.1} s", after.as_secs_f64()),
            (None, true) => "not yet".to_string(),
            (None, false) => "not waited for".to_string(),
        };
        let target = if !r.met_target() {
            format!("**missed**: {:?}", r.unexplained())
        } else if r.tally.failed() > 0 {
            "met (failures explained below)".to_string()
        } else {
            "met".to_string()
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.1} / {:.0} | {} | {} |\n",
            r.phase.name(),
            r.fault,
            r.tally.sent,
            r.tally.failed(),
            r.tally.causes(),
            r.caller.retries,
            r.tally.slow,
            r.tally.percentile_ms(0.99),
            r.tally.max_ms(),
            recovered,
            target,
        ));
    }
    out.push('\n');
    for r in reports {
        let mut lines: Vec<String> = r.findings.notes.clone();
        for cause in r.tally.failures.keys() {
            if let Some(why) = r.phase.explains(cause) {
                lines.push(format!("`{cause}`: {why}"));
            }
        }
        for (cause, example) in &r.tally.examples {
            lines.push(format!("`{cause}`, e.g.: {example}"));
        }
        if r.caller.budget_exhausted > 0 {
            lines.push(format!(
                "the retry budget refused {} retries",
                r.caller.budget_exhausted
            ));
        }
        match r.caller.ejections {
            0 => {}
            1 => lines.push("1 ejection".to_string()),
            n => lines.push(format!("{n} ejections")),
        }
        if r.warm_up.failed() > 0 {
            lines.push(format!("warm-up failures: {}", r.warm_up.causes()));
        }
        if !lines.is_empty() {
            out.push_str(&format!("- **{}**: {}\n", r.phase.name(), lines.join("; ")));
        }
    }
    out
}
