//! Why a listener refused a client, counted per reason in
//! `outrigger_http_refusals_total{direction,reason}` and logged: one line per reason at
//! most every [`LOG_INTERVAL`], saying how many more there were, so that a flood of bad
//! requests cannot flood the log too.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::time::Instant;

use crate::metrics::{Direction, ProxyMetrics};

/// The longest a reason stays silent in the log while it keeps happening.
pub(crate) const LOG_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// An HTTP/1 request head did not arrive in time (slowloris).
    HeaderReadTimeout,
    /// A request head or header list over the limit: answered 431.
    HeadersTooLarge,
    /// A request hyper could not parse: answered 400.
    Malformed,
    /// Both `Content-Length` and `Transfer-Encoding` (request smuggling): 400, closed.
    BothLengths,
    /// More than one `Host`: 400, closed.
    DuplicateHost,
    /// A request target that is not an origin or absolute HTTP URI, or `*` outside
    /// `OPTIONS`: 400, closed.
    BadTarget,
    /// A connection over the listener's cap: closed at once.
    ConnectionLimit,
    /// An HTTP/2 client cancelling most of its streams before their answers (rapid
    /// reset): the connection is closed.
    RapidReset,
    /// HTTP/2 flow abuse that h2 itself answers with GOAWAY `ENHANCE_YOUR_CALM`:
    /// CONTINUATION floods, resets of streams not yet accepted, too many frames.
    Http2Abuse,
    /// An HTTP/2 protocol violation: GOAWAY with the error.
    Http2Protocol,
}

impl Refusal {
    pub(crate) const ALL: [Refusal; 10] = [
        Refusal::HeaderReadTimeout,
        Refusal::HeadersTooLarge,
        Refusal::Malformed,
        Refusal::BothLengths,
        Refusal::DuplicateHost,
        Refusal::BadTarget,
        Refusal::ConnectionLimit,
        Refusal::RapidReset,
        Refusal::Http2Abuse,
        Refusal::Http2Protocol,
    ];

    /// The `reason` label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refusal::HeaderReadTimeout => "header-read-timeout",
            Refusal::HeadersTooLarge => "headers-too-large",
            Refusal::Malformed => "malformed-request",
            Refusal::BothLengths => "content-length-with-transfer-encoding",
            Refusal::DuplicateHost => "duplicate-host",
            Refusal::BadTarget => "bad-request-target",
            Refusal::ConnectionLimit => "connection-limit",
            Refusal::RapidReset => "rapid-reset",
            Refusal::Http2Abuse => "http2-abuse",
            Refusal::Http2Protocol => "http2-protocol-error",
        }
    }

    /// What the log line says happened.
    fn explain(self) -> &'static str {
        match self {
            Refusal::HeaderReadTimeout => {
                "closed a connection whose request head did not arrive in time"
            }
            Refusal::HeadersTooLarge => "answered 431 to a request head over the limit",
            Refusal::Malformed => "answered 400 to a request that does not parse",
            Refusal::BothLengths => {
                "refused a request with both Content-Length and Transfer-Encoding (request smuggling)"
            }
            Refusal::DuplicateHost => "refused a request with more than one Host header",
            Refusal::BadTarget => "refused a request whose target is not an HTTP URI",
            Refusal::ConnectionLimit => "closed a connection over the listener's limit",
            Refusal::RapidReset => {
                "closed an HTTP/2 connection that cancels most of its streams (rapid reset)"
            }
            Refusal::Http2Abuse => "HTTP/2 connection closed with ENHANCE_YOUR_CALM (flood)",
            Refusal::Http2Protocol => "HTTP/2 connection closed for a protocol error",
        }
    }
}

/// When a reason may next be logged, and how many went unlogged since.
#[derive(Debug, Default)]
struct LogGate {
    /// Milliseconds after `Refusals::epoch`; 0 lets the first one through.
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

/// One listener's refusal counters and log gates, indexed by [`Refusal`].
#[derive(Debug)]
pub(crate) struct Refusals {
    direction: Direction,
    counters: Vec<Counter>,
    gates: Vec<LogGate>,
    epoch: Instant,
}

impl Refusals {
    pub(crate) fn new(metrics: &ProxyMetrics, direction: Direction) -> Self {
        Refusals {
            direction,
            counters: Refusal::ALL
                .iter()
                .map(|reason| metrics.http_refusals(direction, reason.as_str()))
                .collect(),
            gates: Refusal::ALL.iter().map(|_| LogGate::default()).collect(),
            epoch: Instant::now(),
        }
    }

    /// Counts the refusal, and logs it unless this reason was logged recently.
    pub(crate) fn refuse(&self, reason: Refusal, peer: SocketAddr, detail: &dyn std::fmt::Display) {
        let index = reason as usize;
        self.counters[index].inc();
        if let Some(more) = self.may_log(index) {
            tracing::info!(
                direction = self.direction.as_str(),
                %peer,
                reason = reason.as_str(),
                %detail,
                more_since_last_line = more,
                "{}",
                reason.explain()
            );
        }
    }

    /// `Some(suppressed since the last line)` if this reason may be logged now.
    fn may_log(&self, index: usize) -> Option<u64> {
        let gate = &self.gates[index];
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let next = gate.next_ms.load(Ordering::Relaxed);
        let due = now >= next
            && gate
                .next_ms
                .compare_exchange(
                    next,
                    now + LOG_INTERVAL.as_millis() as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok();
        if due {
            Some(gate.suppressed.swap(0, Ordering::Relaxed))
        } else {
            gate.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn logs_one_line_per_reason_per_interval_and_counts_the_rest() {
        let metrics = ProxyMetrics::new();
        let refusals = Refusals::new(&metrics, Direction::Outbound);
        let smuggling = Refusal::BothLengths as usize;
        assert_eq!(refusals.may_log(smuggling), Some(0));
        for _ in 0..5 {
            assert_eq!(refusals.may_log(smuggling), None);
        }
        // Another reason has a gate of its own.
        assert_eq!(refusals.may_log(Refusal::Malformed as usize), Some(0));
        tokio::time::advance(LOG_INTERVAL - Duration::from_millis(1)).await;
        assert_eq!(refusals.may_log(smuggling), None);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(refusals.may_log(smuggling), Some(6));
        assert_eq!(refusals.may_log(smuggling), None);
    }

    #[test]
    fn reasons_are_indexed_in_order() {
        for (index, reason) in Refusal::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, index, "{reason:?}");
        }
    }
}
