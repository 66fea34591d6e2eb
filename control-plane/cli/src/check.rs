//! `outrigger check PATH...`: validates policy files as the control plane would load them
//! (as one set, so `targetRef`s resolve across files) and prints every problem, one per
//! line, then a summary. Exit 0 if all is valid, 1 if anything is not.

use std::process::ExitCode;

use outrigger_control_plane::policy;

use crate::cli::CheckArgs;

pub(crate) fn run(args: CheckArgs) -> ExitCode {
    let report = policy::check_paths(&args.paths, &args.trust_domain);
    let files = plural(report.files, "file");
    match report.result {
        Ok(_) if report.files == 0 => {
            println!("no policy files (*.yaml, *.yml) found");
            ExitCode::FAILURE
        }
        Ok(policy) => {
            let traffic = policy
                .services
                .iter()
                .filter(|s| s.traffic_policy.is_some())
                .count();
            println!(
                "{files} valid: {}, {}, {}",
                plural(policy.services.len(), "MeshService"),
                plural(traffic, "TrafficPolicy"),
                plural(policy.server_policies.len(), "ServerPolicy"),
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for line in errors.lines() {
                println!("{line}");
            }
            let mut bad: Vec<_> = errors.0.iter().map(|e| &e.file).collect();
            bad.dedup();
            println!(
                "{} in {} ({files} checked)",
                plural(errors.0.len(), "error"),
                plural(bad.len(), "file"),
            );
            ExitCode::FAILURE
        }
    }
}

fn plural(n: usize, what: &str) -> String {
    match (n, what) {
        (1, _) => format!("1 {what}"),
        (_, w) if w.ends_with('y') => format!("{n} {}ies", &w[..w.len() - 1]),
        _ => format!("{n} {what}s"),
    }
}
