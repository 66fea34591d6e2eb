//! What tracing lost or sent, as plain atomics, and their Prometheus text: kept apart
//! from `metrics.rs` so that the admin page can take them in whatever form it renders.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub(crate) struct TraceCounters {
    /// Access log lines dropped because the writer had fallen behind.
    pub access_log_dropped: AtomicU64,
    /// Spans dropped because the export queue was full.
    pub spans_dropped: AtomicU64,
    /// Spans the collector accepted.
    pub spans_exported: AtomicU64,
    /// Spans lost because the collector refused their batch or could not be reached.
    pub spans_failed: AtomicU64,
}

impl TraceCounters {
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Relaxed);
    }

    /// Appends the counters to a Prometheus text page (format 0.0.4).
    pub(crate) fn render(&self, out: &mut String) {
        for (name, help, counter) in [
            (
                "outrigger_access_log_dropped_total",
                "Access log lines dropped because the writer had fallen behind.",
                &self.access_log_dropped,
            ),
            (
                "outrigger_spans_dropped_total",
                "Spans dropped because the OTLP export queue was full.",
                &self.spans_dropped,
            ),
            (
                "outrigger_spans_exported_total",
                "Spans the OTLP collector accepted.",
                &self.spans_exported,
            ),
            (
                "outrigger_spans_failed_total",
                "Spans lost because the OTLP collector refused their batch or could not be reached.",
                &self.spans_failed,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", counter.load(Relaxed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_counter_with_help_and_type() {
        let counters = TraceCounters::default();
        TraceCounters::add(&counters.spans_dropped, 3);
        TraceCounters::inc(&counters.access_log_dropped);
        let mut page = String::new();
        counters.render(&mut page);
        assert!(
            page.contains("\noutrigger_spans_dropped_total 3\n"),
            "{page}"
        );
        assert!(
            page.starts_with("# HELP outrigger_access_log_dropped_total "),
            "{page}"
        );
        assert!(
            page.contains("\noutrigger_access_log_dropped_total 1\n"),
            "{page}"
        );
        assert!(
            page.contains("# TYPE outrigger_spans_failed_total counter\n"),
            "{page}"
        );
        assert_eq!(page.lines().count(), 12);
    }
}
