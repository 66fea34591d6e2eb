//! Running the `outrigger` CLI as a user does (see [`crate::run`]): paths as arguments,
//! and what it printed, with the one `error:` line a failure must print.

use std::path::Path;
use std::process::Output;

/// A path as a command-line argument.
pub fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The `error: ...` line of a failed run (exit 1); there must be exactly one.
pub fn the_error_line(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "exit 1: {}", stderr(out));
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 1, "one error line: {err}");
    lines[0].to_string()
}
