//! Real third-party programs some tests drive: a headless Chromium for the dashboard,
//! and Prometheus' `promtool` and `prometheus` for the metrics. A test asks with
//! [`require`]: without the program it skips, saying so on stderr. On a developer's
//! machine that is a convenience; in CI it would pass without testing anything, so
//! `.ci/run` installs the programs and sets `OUTRIGGER_SKIP_FILE`: every skip (these, and
//! the network-namespace tests') is appended to that file, and any line in it fails the
//! run.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Where a skip is recorded (one line per skipped test), when set.
pub const SKIP_FILE_ENV: &str = "OUTRIGGER_SKIP_FILE";

/// The program `name` (looked up on `PATH`, then in `/usr/bin` and `/usr/sbin`), or
/// `None` after recording that `test` skipped for want of it.
pub fn require(name: &str, test: &str) -> Option<PathBuf> {
    let skip_file = std::env::var_os(SKIP_FILE_ENV).map(PathBuf::from);
    require_recording_in(name, test, skip_file.as_deref())
}

/// Prints `line` and appends it to `$OUTRIGGER_SKIP_FILE` when set.
pub fn record_skip(line: &str) {
    let skip_file = std::env::var_os(SKIP_FILE_ENV).map(PathBuf::from);
    record_in(line, skip_file.as_deref());
}

fn require_recording_in(name: &str, test: &str, skip_file: Option<&Path>) -> Option<PathBuf> {
    if let Some(found) = find(name) {
        return Some(found);
    }
    record_in(
        &format!("COMPONENT-SKIPPED: {test}: `{name}` is not installed"),
        skip_file,
    );
    None
}

fn record_in(line: &str, skip_file: Option<&Path>) {
    eprintln!("{line}");
    if let Some(file) = skip_file {
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = appended {
            panic!("{line} (and cannot write {}: {e})", file.display());
        }
    }
}

/// The program `name` on `PATH`, or in `/usr/bin` or `/usr/sbin` (Debian puts nginx
/// and haproxy there), if installed; nothing is recorded.
pub fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_and_records_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("skipped");
        assert!(require_recording_in("sh", "a test", Some(&file)).is_some());
        assert!(!file.exists(), "nothing skipped yet");
        assert!(require_recording_in("no-such-program-here", "a test", Some(&file)).is_none());
        assert!(require_recording_in("no-such-program-here", "another", None).is_none());
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "COMPONENT-SKIPPED: a test: `no-such-program-here` is not installed\n"
        );
    }
}
