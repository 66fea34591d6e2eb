//! Opaque TCP metrics of one (direction, service): connections opened and closed, bytes
//! each way, and how long connections lasted. The series appear with the service's first
//! connection (an HTTP service shows none), and are then plain atomics.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

use super::buckets::Buckets;
use super::families::Families;
use super::labels::{ServiceLabels, TcpBytesLabels};

#[derive(Debug, Default)]
pub(crate) struct TcpCounters {
    handles: OnceLock<Handles>,
    /// Where the handles come from; `None` for counters nobody renders (tests).
    source: Option<(Families, ServiceLabels)>,
}

#[derive(Debug)]
struct Handles {
    opened: Counter,
    closed: Counter,
    sent: Counter,
    received: Counter,
    durations: Buckets,
}

impl TcpCounters {
    pub(super) fn new(families: Families, labels: ServiceLabels) -> Self {
        TcpCounters {
            handles: OnceLock::new(),
            source: Some((families, labels)),
        }
    }

    fn handles(&self) -> &Handles {
        self.handles.get_or_init(|| match &self.source {
            Some((families, labels)) => {
                let bytes = |way| TcpBytesLabels {
                    service: labels.clone(),
                    way,
                };
                Handles {
                    opened: families.tcp_open.get_or_create_owned(labels),
                    closed: families.tcp_close.get_or_create_owned(labels),
                    sent: families.tcp_bytes.get_or_create_owned(&bytes("sent")),
                    received: families.tcp_bytes.get_or_create_owned(&bytes("received")),
                    durations: families.tcp_duration.get_or_create_owned(labels),
                }
            }
            None => Handles {
                opened: Counter::default(),
                closed: Counter::default(),
                sent: Counter::default(),
                received: Counter::default(),
                durations: Buckets::connections(),
            },
        })
    }

    pub(crate) fn opened(&self) {
        self.handles().opened.inc();
    }

    /// A connection ended after `elapsed`, having carried `sent` bytes from the client
    /// and `received` back.
    pub(crate) fn closed(&self, sent: u64, received: u64, elapsed: Duration) {
        let handles = self.handles();
        handles.closed.inc();
        handles.sent.inc_by(sent);
        handles.received.inc_by(received);
        handles.durations.observe(elapsed);
    }

    /// Takes this service's TCP series off the page (its handle is gone).
    pub(super) fn remove(&self) {
        if let (Some(_), Some((families, labels))) = (self.handles.get(), &self.source) {
            families.tcp_open.remove(labels);
            families.tcp_close.remove(labels);
            for way in ["sent", "received"] {
                families.tcp_bytes.remove(&TcpBytesLabels {
                    service: labels.clone(),
                    way,
                });
            }
            families.tcp_duration.remove(labels);
        }
    }
}
