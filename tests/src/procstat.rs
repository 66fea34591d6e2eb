//! What a process costs, read from /proc: CPU time (user + system), resident memory,
//! open file descriptors and threads. A process that is gone reads as 0.

use std::time::Duration;

/// CPU time the process has used so far.
pub fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: indexes 11 and 12 after the name.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<u64>().ok())
        .sum();
    Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64)
}

/// Resident set size in bytes.
pub fn rss(pid: u32) -> u64 {
    status_field(pid, "VmRSS:") * 1024
}

/// The anonymous part of the resident set in bytes: heap, stacks, buffers, what this
/// process alone holds. The rest of the RSS is mapped files, mostly the program's own
/// code, whose pages every process running the same binary shares.
pub fn rss_anon(pid: u32) -> u64 {
    status_field(pid, "RssAnon:") * 1024
}

/// The number that starts a field of /proc/PID/status (`VmRSS:   1234 kB`, `Threads: 3`).
fn status_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or(0)
}

/// Open file descriptors (entries of /proc/PID/fd).
pub fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count() as u64)
}

/// Threads (the `Threads:` line of /proc/PID/status).
pub fn threads(pid: u32) -> u64 {
    status_field(pid, "Threads:")
}

/// USER_HZ, the unit of those times (100 nearly everywhere).
fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}
