//! The numbers of a run, and the Markdown that BENCHMARKS.md takes: medians over the
//! runs, latency added to the baseline's, and ratios to the peers of the same run.

use std::fmt::Write as _;
use std::time::Duration;

use crate::load::Outcome;

const QUANTILES: [(&str, f64); 4] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)];

/// One topology's measurements in one run.
pub(crate) struct Sample {
    /// Milliseconds at each of [`QUANTILES`], then the maximum.
    pub(crate) latency_ms: [f64; 5],
    pub(crate) ok: u64,
    pub(crate) errors: u64,
    /// CPU seconds per 1,000 requests, per proxy (outbound, inbound).
    pub cpu_per_1k: Vec<f64>,
    /// Resident bytes, per proxy.
    pub(crate) rss: Vec<u64>,
    /// Of those, anonymous (not file-backed) bytes, per proxy.
    pub(crate) anon: Vec<u64>,
}

impl Sample {
    pub(crate) fn new(outcome: &Outcome, cpu: &[Duration], memory: &[(u64, u64)]) -> Sample {
        let mut latency_ms = [0.0; 5];
        for (slot, (_, q)) in latency_ms.iter_mut().zip(QUANTILES) {
            *slot = outcome.percentile_ms(q);
        }
        latency_ms[4] = outcome.latency.max() as f64 / 1000.0;
        let thousands = (outcome.ok + outcome.errors).max(1) as f64 / 1000.0;
        Sample {
            latency_ms,
            ok: outcome.ok,
            errors: outcome.errors,
            cpu_per_1k: cpu.iter().map(|c| c.as_secs_f64() / thousands).collect(),
            rss: memory.iter().map(|m| m.0).collect(),
            anon: memory.iter().map(|m| m.1).collect(),
        }
    }

    pub(crate) fn brief(&self) -> String {
        format!(
            "p50 {:.3} ms, p99 {:.3} ms, {} ok, {} errors, CPU/1k {:?}",
            self.latency_ms[0], self.latency_ms[2], self.ok, self.errors, self.cpu_per_1k
        )
    }
}

/// One topology over every run.
pub(crate) struct Row {
    pub(crate) name: &'static str,
    pub(crate) samples: Vec<Sample>,
    pub(crate) max_rps: f64,
}

impl Row {
    pub(crate) fn new(name: &'static str) -> Row {
        Row {
            name,
            samples: Vec::new(),
            max_rps: 0.0,
        }
    }

    fn latency(&self, i: usize) -> f64 {
        median(self.samples.iter().map(|s| s.latency_ms[i]))
    }

    /// CPU seconds per 1,000 requests of both proxies together (= vCPU at 1,000 req/s).
    fn cpu(&self) -> f64 {
        median(self.samples.iter().map(|s| s.cpu_per_1k.iter().sum()))
    }

    fn cpu_of(&self, proxy: usize) -> f64 {
        median(
            self.samples
                .iter()
                .filter_map(|s| s.cpu_per_1k.get(proxy).copied()),
        )
    }

    fn rss_of(&self, proxy: usize) -> f64 {
        median(
            self.samples
                .iter()
                .filter_map(|s| s.rss.get(proxy).map(|b| *b as f64 / 1e6)),
        )
    }

    fn anon_of(&self, proxy: usize) -> f64 {
        median(
            self.samples
                .iter()
                .filter_map(|s| s.anon.get(proxy).map(|b| *b as f64 / 1e6)),
        )
    }

    fn errors(&self) -> u64 {
        self.samples.iter().map(|s| s.errors).sum()
    }

    fn has_proxies(&self) -> bool {
        self.samples
            .first()
            .is_some_and(|s| !s.cpu_per_1k.is_empty())
    }
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub(crate) fn markdown(rows: &[Row], setup: &str, ready: &[Duration]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Setup: {setup}. Medians over the runs.\n");
    let _ = writeln!(
        out,
        "| topology | p50 | p90 | p99 | p99.9 | max | errors | max req/s |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms | {:.2} ms | {} | {:.0} |",
            row.name,
            row.latency(0),
            row.latency(1),
            row.latency(2),
            row.latency(3),
            row.latency(4),
            row.errors(),
            row.max_rps
        );
    }
    let Some(baseline) = rows.iter().find(|r| r.name == "baseline") else {
        return out;
    };
    let _ = writeln!(
        out,
        "\n| two hops through | added p50 | added p90 | added p99 | added p99.9 | CPU per 1k req/s (out + in) | CPU out / in | RSS out / in | of which anonymous |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for row in rows.iter().filter(|r| r.has_proxies()) {
        let added = |i: usize| row.latency(i) - baseline.latency(i);
        let _ = writeln!(
            out,
            "| {} | {:+.3} ms | {:+.3} ms | {:+.3} ms | {:+.3} ms | {:.3} vCPU | {:.3} / {:.3} | {:.1} / {:.1} MB | {:.1} / {:.1} MB |",
            row.name,
            added(0),
            added(1),
            added(2),
            added(3),
            row.cpu(),
            row.cpu_of(0),
            row.cpu_of(1),
            row.rss_of(0),
            row.rss_of(1),
            row.anon_of(0),
            row.anon_of(1)
        );
    }
    if let Some(ours) = rows.iter().find(|r| r.name == "outrigger") {
        let peers: Vec<&Row> = rows
            .iter()
            .filter(|r| r.has_proxies() && r.name != "outrigger")
            .collect();
        if !peers.is_empty() {
            let _ = writeln!(
                out,
                "\n| Outrigger ÷ peer | added p50 | added p99 | CPU | RSS (mean of both sides) | max req/s |"
            );
            let _ = writeln!(out, "|---|---|---|---|---|---|");
            for peer in peers {
                let added = |row: &Row, i: usize| row.latency(i) - baseline.latency(i);
                let rss = |row: &Row| (row.rss_of(0) + row.rss_of(1)) / 2.0;
                let _ = writeln!(
                    out,
                    "| {} | {:.2}× | {:.2}× | {:.2}× | {:.2}× | {:.2}× |",
                    peer.name,
                    added(ours, 0) / added(peer, 0),
                    added(ours, 2) / added(peer, 2),
                    ours.cpu() / peer.cpu(),
                    rss(ours) / rss(peer),
                    ours.max_rps / peer.max_rps
                );
            }
        }
    }
    let mut ready: Vec<f64> = ready.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ready.sort_by(f64::total_cmp);
    if let (Some(min), Some(max)) = (ready.first(), ready.last()) {
        let _ = writeln!(
            out,
            "\nSidecar start → ready (certificate and config held): median {:.1} ms (min {min:.1}, max {max:.1}, {} starts).",
            ready[ready.len() / 2],
            ready.len()
        );
    }
    out
}
