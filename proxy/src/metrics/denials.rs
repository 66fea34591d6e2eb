//! Denials by the ServerPolicy, per caller edge: requests (`http`) and opaque TCP
//! connections (`tcp`) it refused. Every denial counts here, while the log line about it
//! is throttled (`inbound/denial_log.rs`): the metric is the exact count, the log the
//! sample that says why. A protocol's series appears with its first denial.

use std::sync::OnceLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::labels::{DenialLabels, EdgeLabels};

/// What was denied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Denied {
    /// An HTTP request (a WebSocket upgrade included).
    Http,
    /// An opaque TCP connection.
    Tcp,
}

impl Denied {
    const ALL: [Denied; 2] = [Denied::Http, Denied::Tcp];

    fn label(self) -> &'static str {
        match self {
            Denied::Http => "http",
            Denied::Tcp => "tcp",
        }
    }
}

/// One edge's denials.
#[derive(Debug)]
pub(crate) struct DenialCounts {
    counters: [OnceLock<Counter>; Denied::ALL.len()],
    family: Family<DenialLabels, Counter>,
    edge: EdgeLabels,
}

impl DenialCounts {
    pub(super) fn new(family: Family<DenialLabels, Counter>, edge: EdgeLabels) -> Self {
        DenialCounts {
            counters: Default::default(),
            family,
            edge,
        }
    }

    pub(crate) fn record(&self, what: Denied) {
        self.counters[what as usize]
            .get_or_init(|| self.family.get_or_create_owned(&self.labels(what)))
            .inc();
    }

    /// Takes the edge's series off the page.
    pub(super) fn remove(&self) {
        for what in Denied::ALL {
            if self.counters[what as usize].get().is_some() {
                self.family.remove(&self.labels(what));
            }
        }
    }

    fn labels(&self, what: Denied) -> DenialLabels {
        DenialLabels {
            edge: self.edge.clone(),
            protocol: what.label(),
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::metrics::labels::{Direction, ServiceLabels};

    #[test]
    fn counts_per_protocol_and_leaves_the_page_when_removed() {
        let family = Family::<DenialLabels, Counter>::default();
        let mut registry = Registry::with_prefix("outrigger");
        registry.register("authorization_denied", "denials", family.clone());
        let edge = EdgeLabels {
            service: ServiceLabels {
                direction: Direction::Inbound,
                service: "payments".into(),
            },
            caller: "spiffe://cluster.local/ns/shop/sa/evil".into(),
            route: String::new(),
        };
        let counts = DenialCounts::new(family, edge);
        counts.record(Denied::Http);
        counts.record(Denied::Http);
        counts.record(Denied::Tcp);
        let page = || {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
            text
        };
        let text = page();
        let labels = "direction=\"inbound\",service=\"payments\",caller=\"spiffe://cluster.local/ns/shop/sa/evil\",route=\"\"";
        assert!(
            text.contains(&format!(
                "outrigger_authorization_denied_total{{{labels},protocol=\"http\"}} 2"
            )),
            "{text}"
        );
        assert!(text.contains("protocol=\"tcp\"} 1"), "{text}");
        counts.remove();
        assert!(!page().contains("evil"));
    }
}
