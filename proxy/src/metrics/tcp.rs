//! Opaque TCP metrics of one (direction, service): connections opened and closed, bytes
//! each way, and how long connections lasted. Plain atomics, resolved with the service's
//! other handles, so a connection touches no map or lock.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::{ServiceMetrics, escape, header};

/// Bucket bounds of `tcp_connection_duration_seconds`: connections live from
/// milliseconds (a request) to hours (a database pool).
const DURATION_BUCKETS: [f64; 10] = [0.01, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 1800.0, 3600.0];

#[derive(Debug, Default)]
pub(crate) struct TcpCounters {
    opened: AtomicU64,
    closed: AtomicU64,
    /// From the connecting side towards the accepting side ("sent") and back.
    sent: AtomicU64,
    received: AtomicU64,
    /// Cumulative per bound, as Prometheus wants them; the last slot is +Inf.
    durations: [AtomicU64; DURATION_BUCKETS.len() + 1],
    duration_micros: AtomicU64,
}

impl TcpCounters {
    pub(crate) fn opened(&self) {
        self.opened.fetch_add(1, Relaxed);
    }

    /// A connection ended after `elapsed`, having carried `sent` bytes from the client
    /// and `received` back.
    pub(crate) fn closed(&self, sent: u64, received: u64, elapsed: Duration) {
        self.closed.fetch_add(1, Relaxed);
        self.sent.fetch_add(sent, Relaxed);
        self.received.fetch_add(received, Relaxed);
        let seconds = elapsed.as_secs_f64();
        for (bound, count) in DURATION_BUCKETS.iter().zip(&self.durations) {
            if seconds <= *bound {
                count.fetch_add(1, Relaxed);
            }
        }
        self.durations[DURATION_BUCKETS.len()].fetch_add(1, Relaxed);
        self.duration_micros
            .fetch_add(elapsed.as_micros() as u64, Relaxed);
    }

    fn is_unused(&self) -> bool {
        self.opened.load(Relaxed) == 0
    }
}

/// The TCP series of every service that has carried a connection.
pub(super) fn render(out: &mut String, services: &[Arc<ServiceMetrics>]) {
    let used: Vec<&Arc<ServiceMetrics>> = services.iter().filter(|m| !m.tcp.is_unused()).collect();
    let labels = |m: &ServiceMetrics| {
        format!(
            "direction=\"{}\",service=\"{}\"",
            m.direction.as_str(),
            escape(&m.service)
        )
    };
    header(
        out,
        "tcp_open_total",
        "counter",
        "Opaque TCP connections opened.",
    );
    for m in &used {
        let _ = writeln!(
            out,
            "outrigger_tcp_open_total{{{}}} {}",
            labels(m),
            m.tcp.opened.load(Relaxed)
        );
    }
    header(
        out,
        "tcp_close_total",
        "counter",
        "Opaque TCP connections closed.",
    );
    for m in &used {
        let _ = writeln!(
            out,
            "outrigger_tcp_close_total{{{}}} {}",
            labels(m),
            m.tcp.closed.load(Relaxed)
        );
    }
    header(
        out,
        "tcp_bytes_total",
        "counter",
        "Bytes of closed opaque TCP connections: sent by the client (`sent`) and back to it (`received`).",
    );
    for m in &used {
        let l = labels(m);
        let _ = writeln!(
            out,
            "outrigger_tcp_bytes_total{{{l},way=\"sent\"}} {}",
            m.tcp.sent.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "outrigger_tcp_bytes_total{{{l},way=\"received\"}} {}",
            m.tcp.received.load(Relaxed)
        );
    }
    header(
        out,
        "tcp_connection_duration_seconds",
        "histogram",
        "How long opaque TCP connections lasted.",
    );
    for m in &used {
        let l = labels(m);
        for (bound, count) in DURATION_BUCKETS.iter().zip(&m.tcp.durations) {
            let _ = writeln!(
                out,
                "outrigger_tcp_connection_duration_seconds_bucket{{{l},le=\"{bound}\"}} {}",
                count.load(Relaxed)
            );
        }
        let all = m.tcp.durations[DURATION_BUCKETS.len()].load(Relaxed);
        let _ = writeln!(
            out,
            "outrigger_tcp_connection_duration_seconds_bucket{{{l},le=\"+Inf\"}} {all}"
        );
        let sum = m.tcp.duration_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "outrigger_tcp_connection_duration_seconds_sum{{{l}}} {sum}"
        );
        let _ = writeln!(
            out,
            "outrigger_tcp_connection_duration_seconds_count{{{l}}} {all}"
        );
    }
}
