//! chaos: faults under a constant load, and what they cost (docs/reliability.md).
//!
//! ```sh
//! cargo build --bins
//! target/debug/chaos              # the long form (about 12 minutes)
//! target/debug/chaos --short      # the form CI runs as tests/tests/chaos.rs
//! target/debug/chaos --phase kill-sidecar --phase stop-app --rate 100
//! ```
//!
//! Prints the table as Markdown on stdout (progress on stderr); exits 1 if a phase lost
//! requests that the policy could have saved.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use outrigger_tests::chaos::{self, Phase, Settings};

fn usage(error: &str) -> ! {
    eprintln!("error: {error}");
    eprintln!(
        "usage: chaos [--short] [--rate N] [--fault-seconds N] [--phase NAME]... [--keep-logs DIR]\n\
         phases: {}",
        Phase::ALL.map(Phase::name).join(", ")
    );
    std::process::exit(2);
}

fn parse() -> (Settings, Vec<Phase>) {
    let words: Vec<String> = std::env::args().skip(1).collect();
    let mut settings = if words.iter().any(|w| w == "--short") {
        Settings::short()
    } else {
        Settings::long()
    };
    let mut phases = Vec::new();
    let mut words = words.into_iter();
    while let Some(word) = words.next() {
        let mut value = || {
            words
                .next()
                .unwrap_or_else(|| usage(&format!("{word} takes a value")))
        };
        match word.as_str() {
            "--short" => {}
            "--rate" => {
                settings.rate = value().parse().unwrap_or_else(|_| usage("--rate N"));
            }
            "--fault-seconds" => {
                let seconds = value()
                    .parse()
                    .unwrap_or_else(|_| usage("--fault-seconds N"));
                settings.fault = Duration::from_secs(seconds);
            }
            "--phase" => {
                let name = value();
                phases.push(
                    Phase::by_name(&name)
                        .unwrap_or_else(|| usage(&format!("no phase called {name:?}"))),
                );
            }
            "--keep-logs" => settings.keep_logs = Some(PathBuf::from(value())),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    if phases.is_empty() {
        phases = Phase::ALL.to_vec();
    }
    (settings, phases)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let (settings, phases) = parse();
    let reports = chaos::run(&settings, &phases).await;
    println!("{}", chaos::markdown(&reports, &settings));
    if reports.iter().all(|r| r.met_target()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
