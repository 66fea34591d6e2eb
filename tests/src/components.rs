//! Real components the tests use that a developer's machine may lack: Debian's
//! `prometheus` (with `promtool`) and `chromium`. [`require`] finds one; where it is
//! missing, the test prints one line `COMPONENT-SKIPPED: <what>` and returns. When
//! `OUTRIGGER_SKIP_FILE` is set (`.ci/run` sets it in CI, where it installs them), the
//! line is also appended to that file, so that CI fails rather than pass without the test.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The path of the program `name`, searched on `PATH` and in `/usr/bin`, `/usr/sbin`;
/// `None` (after recording the skip) when it is not installed.
pub fn require(name: &str, test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        record_skip(&format!(
            "COMPONENT-SKIPPED: {test} needs `{name}` (apt-get install {})",
            package_of(name)
        ));
    }
    found
}

fn package_of(program: &str) -> &str {
    match program {
        "promtool" => "prometheus",
        other => other,
    }
}

/// Prints `line` and appends it to `$OUTRIGGER_SKIP_FILE` when set.
pub fn record_skip(line: &str) {
    eprintln!("{line}");
    if let Some(file) = std::env::var_os("OUTRIGGER_SKIP_FILE") {
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(Path::new(&file))
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = appended {
            panic!(
                "{line} (and cannot write {}: {e})",
                Path::new(&file).display()
            );
        }
    }
}
