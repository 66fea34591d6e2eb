//! What tracing lost or sent: counters shared with the access log writer and the span
//! exporter, and offered to `/metrics` as a registry of their own (the admin page
//! encodes it beside the proxy's).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

#[derive(Debug, Default)]
pub(crate) struct TraceCounters {
    /// Access log lines dropped because the writer had fallen behind.
    pub access_log_dropped: Counter,
    /// Spans dropped because the export queue was full.
    pub spans_dropped: Counter,
    /// Spans the collector accepted.
    pub spans_exported: Counter,
    /// Spans lost because the collector refused their batch or could not be reached.
    pub spans_failed: Counter,
}

impl TraceCounters {
    pub(crate) fn inc(counter: &Counter) {
        counter.inc();
    }

    pub(crate) fn add(counter: &Counter, n: usize) {
        counter.inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// The counters as a registry for the admin page (they share their values with it).
    pub(crate) fn registry(&self) -> Registry {
        let mut registry = Registry::with_prefix("outrigger");
        for (name, help, counter) in [
            (
                "access_log_dropped",
                "Access log lines dropped because the writer had fallen behind",
                &self.access_log_dropped,
            ),
            (
                "spans_dropped",
                "Spans dropped because the OTLP export queue was full",
                &self.spans_dropped,
            ),
            (
                "spans_exported",
                "Spans the OTLP collector accepted",
                &self.spans_exported,
            ),
            (
                "spans_failed",
                "Spans lost because the OTLP collector refused their batch or could not be reached",
                &self.spans_failed,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_shows_every_counter() {
        let counters = TraceCounters::default();
        TraceCounters::add(&counters.spans_dropped, 3);
        TraceCounters::inc(&counters.access_log_dropped);
        let mut page = String::new();
        prometheus_client::encoding::text::encode(&mut page, &counters.registry()).unwrap();
        assert!(
            page.contains("\noutrigger_spans_dropped_total 3\n"),
            "{page}"
        );
        assert!(
            page.contains("\noutrigger_access_log_dropped_total 1\n"),
            "{page}"
        );
        assert!(
            page.contains("\noutrigger_spans_exported_total 0\n"),
            "{page}"
        );
        assert!(
            page.contains("# TYPE outrigger_spans_failed counter\n"),
            "{page}"
        );
    }
}
