//! Runs a plan: checks the privileges, finds the distribution's iptables binaries, reads
//! the table with `*-save`, runs each command, and stops at the first one refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::options::Init;
use super::plan::{self, Step};
use super::rules::{Family, rule_set};
use super::table::NatTable;

/// Why init could not do its work; each is one line for the user.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InitError {
    #[error(
        "outrigger-proxy init must run as root (it needs CAP_NET_ADMIN to change iptables rules); \
         --dry-run prints the rules without it"
    )]
    NotPermitted,
    #[error(
        "`{0}` not found in PATH, /usr/sbin or /sbin: install the distribution's iptables package"
    )]
    MissingBinary(&'static str),
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("iptables refused `{command}`: {message}")]
    Refused { command: String, message: String },
}

/// Does what `init` asks: print, write or remove the rules of each family.
pub(crate) fn run(init: &Init) -> Result<(), InitError> {
    let families = if init.no_ipv6 {
        vec![Family::V4]
    } else {
        vec![Family::V4, Family::V6]
    };
    if init.dry_run {
        // Nothing is read either: the plan is the one for a pod where init never ran
        // (or, with --cleanup, where it ran with these options).
        for family in families {
            let set = rule_set(init, family);
            let steps = if init.cleanup {
                plan::cleanup(family, &NatTable::installed(&set))
            } else {
                plan::apply(&set, &NatTable::default())
            };
            for step in steps {
                println!("{step}");
            }
        }
        return Ok(());
    }

    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !has_net_admin(&status) {
        return Err(InitError::NotPermitted);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for family in families {
        let binaries = (find(family.iptables(), &path), find(family.save(), &path));
        let (iptables, save) = match (binaries, family) {
            ((Some(iptables), Some(save)), _) => (iptables, save),
            ((None, _), Family::V4) => return Err(InitError::MissingBinary("iptables")),
            ((_, None), Family::V4) => return Err(InitError::MissingBinary("iptables-save")),
            (_, Family::V6) => {
                // Not a failure: many images ship IPv4 tooling only, and an IPv4-only
                // pod needs nothing more. But the user must know IPv6 is not covered.
                eprintln!("warning: ip6tables not found: IPv6 connections are not redirected");
                continue;
            }
        };
        let current = NatTable::parse(&read_table(&save, family)?);
        let steps = if init.cleanup {
            plan::cleanup(family, &current)
        } else {
            plan::apply(&rule_set(init, family), &current)
        };
        for step in &steps {
            execute(&iptables, step)?;
        }
    }
    Ok(())
}

/// `iptables-save -t nat`.
fn read_table(save: &Path, family: Family) -> Result<String, InitError> {
    let command = format!("{} -t nat", family.save());
    let output = Command::new(save)
        .args(["-t", "nat"])
        .output()
        .map_err(|source| InitError::Spawn {
            command: command.clone(),
            source,
        })?;
    check(&command, &output)?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn execute(iptables: &Path, step: &Step) -> Result<(), InitError> {
    let output = Command::new(iptables)
        .args(step.argv())
        .output()
        .map_err(|source| InitError::Spawn {
            command: step.to_string(),
            source,
        })?;
    check(&step.to_string(), &output)
}

/// A failed command becomes [`InitError::Refused`] with iptables' own words on one line.
fn check(command: &str, output: &Output) -> Result<(), InitError> {
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let message: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        // iptables ends most errors with a pointer to its help; it says nothing here.
        .filter(|l| !l.is_empty() && !l.starts_with("Try `"))
        .collect();
    let message = if message.is_empty() {
        output.status.to_string()
    } else {
        message.join("; ")
    };
    Err(InitError::Refused {
        command: command.to_string(),
        message,
    })
}

/// Whether the effective capabilities (`CapEff:` of /proc/self/status) hold
/// CAP_NET_ADMIN (bit 12). Checked instead of uid 0: an init container may run as
/// another uid with that capability granted, and root without it cannot write rules.
fn has_net_admin(status: &str) -> bool {
    const CAP_NET_ADMIN: u32 = 12;
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_NET_ADMIN) != 0)
}

/// `name` in `path` (as in $PATH), else in /usr/sbin or /sbin, which a non-root PATH
/// often lacks although the iptables binaries live there.
fn find(name: &str, path: &std::ffi::OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt as _;
    use std::process::ExitStatus;

    use super::*;

    #[test]
    fn net_admin_from_status() {
        let root = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        let user = "Name:\tx\nCapEff:\t0000000000000000\n";
        let only_net_admin = "CapEff:\t0000000000001000\n";
        assert!(has_net_admin(root));
        assert!(!has_net_admin(user));
        assert!(has_net_admin(only_net_admin));
        assert!(!has_net_admin(""));
    }

    #[test]
    fn refusal_is_one_line_with_iptables_words() {
        let output = Output {
            status: ExitStatus::from_raw(2 << 8),
            stdout: Vec::new(),
            stderr: b"iptables v1.8.9 (nf_tables): Chain 'BOGUS' does not exist\n\
                      Try `iptables -h' or 'iptables --help' for more information.\n"
                .to_vec(),
        };
        let error = check("iptables -w -t nat -A X -j BOGUS", &output).unwrap_err();
        let line = error.to_string();
        assert_eq!(
            line,
            "iptables refused `iptables -w -t nat -A X -j BOGUS`: \
             iptables v1.8.9 (nf_tables): Chain 'BOGUS' does not exist"
        );
    }

    #[test]
    fn binaries_are_found_in_sbin_without_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("iptables"), "").unwrap();
        let path = std::env::join_paths([dir.path()]).unwrap();
        assert_eq!(find("iptables", &path), Some(dir.path().join("iptables")));
        assert_eq!(find("outrigger-no-such-binary", &path), None);
    }
}
