//! `outrigger-proxy init`: writes the iptables `nat` rules that send a pod's TCP through
//! its sidecar (inbound to 4143, outbound to 4140), or removes them with `--cleanup`.
//!
//! The rules are data: [`rules`] turns the options into the chains' contents, [`plan`]
//! compares them with what `iptables-save` shows and lists the commands to run, and only
//! [`run`] touches the system. See docs/interception.md for the rules and their reasons.

mod options;
mod plan;
mod rules;
mod run;
mod table;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser as _;

pub use options::{Cidr, Init, PortRange};

/// Runs `outrigger-proxy init` with `args` (the first one is the program's name), and
/// returns its exit code: 0 done, 1 refused or failed (one line on stderr), 2 bad usage.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let init = match Init::try_parse_from(args) {
        Ok(init) => init,
        Err(error) if !error.use_stderr() => error.exit(), // --help
        Err(error) => {
            let text = error.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            eprintln!("{first}");
            return ExitCode::from(2);
        }
    };
    match run::run(&init) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
