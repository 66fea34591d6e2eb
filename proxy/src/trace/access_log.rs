//! The JSON access log: one line per request on stdout, written by a thread of its own.
//! A request only hands its record to a bounded queue; when the writer has fallen behind
//! (stdout is a full pipe, say), the record is dropped and counted rather than waited
//! for. The thread, not a task, does the writing because writes to stdout block, and
//! one writer means whole lines only. At shutdown the owner waits, for a bounded time,
//! until what is queued has been written.

use std::io::Write;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use serde::Serialize;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::context::hex;
use super::counters::TraceCounters;
use super::record::Record;
use super::wall_clock::rfc3339_micros;
use crate::identity::Identity;

/// Records waiting for the writer: a burst of this many is absorbed, more is dropped.
const QUEUE: usize = 4096;

/// Lines written with one `write` at most: a burst costs few system calls.
const LINES_PER_WRITE: usize = 256;

pub(crate) struct AccessLog {
    queue: SyncSender<Entry>,
    counters: Arc<TraceCounters>,
}

/// What the writer is handed: a request's record, or a request to say when everything
/// before it is written.
pub(crate) enum Entry {
    Record(Arc<Record>),
    Flush(oneshot::Sender<()>),
}

/// The owner's handle to flush the log at shutdown.
pub(crate) struct AccessLogFlush(SyncSender<Entry>);

impl AccessLog {
    /// Starts the writer thread, writing to stdout.
    pub(crate) fn start(
        identity: Arc<Identity>,
        counters: Arc<TraceCounters>,
    ) -> (AccessLog, AccessLogFlush) {
        let (queue, records) = sync_channel(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let own = || identity.id().map(|id| id.as_str().to_string());
                write_lines(&records, own, std::io::stdout());
            });
        if let Err(error) = spawned {
            // The queue's receiver went with the closure: every record counts as dropped.
            tracing::error!(%error, "cannot start the access log writer; lines are dropped");
        }
        let flush = AccessLogFlush(queue.clone());
        (AccessLog { queue, counters }, flush)
    }

    /// An access log whose records go to `queue` (tests read them there).
    #[cfg(test)]
    pub(crate) fn to_queue(queue: SyncSender<Entry>, counters: Arc<TraceCounters>) -> Self {
        AccessLog { queue, counters }
    }

    /// Hands a record to the writer, never waiting.
    pub(crate) fn push(&self, record: Arc<Record>) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.queue.try_send(Entry::Record(record))
        {
            TraceCounters::inc(&self.counters.access_log_dropped);
        }
    }
}

impl AccessLogFlush {
    /// Waits until every line queued now is written, or until `deadline`. Never blocks
    /// the runtime: a full queue is retried, and the writer's answer awaited.
    pub(crate) async fn flush(self, deadline: Instant) {
        let (done, written) = oneshot::channel();
        let mut entry = Entry::Flush(done);
        loop {
            match self.0.try_send(entry) {
                Ok(()) => break,
                Err(TrySendError::Full(again)) if Instant::now() < deadline => {
                    entry = again;
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                Err(_) => return,
            }
        }
        let _ = tokio::time::timeout_at(deadline, written).await;
    }
}

/// Writes records as lines until every sender is gone; `own` says this proxy's identity
/// (none until its first certificate).
fn write_lines(entries: &Receiver<Entry>, own: impl Fn() -> Option<String>, mut out: impl Write) {
    let mut buffer = Vec::with_capacity(64 * 1024);
    let mut flushes = Vec::new();
    while let Ok(first) = entries.recv() {
        let own = own();
        for entry in std::iter::once(first).chain(entries.try_iter().take(LINES_PER_WRITE - 1)) {
            match entry {
                Entry::Record(record) => line(&record, own.as_deref(), &mut buffer),
                Entry::Flush(done) => flushes.push(done),
            }
        }
        if let Err(error) = out.write_all(&buffer).and_then(|()| out.flush()) {
            // Nowhere to log to but the diagnostics: say it once per burst.
            tracing::warn!(%error, "cannot write the access log");
        }
        buffer.clear();
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Appends one JSON line for `record` to `out`; `own` is this proxy's identity.
pub(crate) fn line(record: &Record, own: Option<&str>, out: &mut Vec<u8>) {
    let (identity, peer_identity) = (own, record.peer.as_deref());
    let entry = Line {
        timestamp: rfc3339_micros(record.start_unix_nanos),
        direction: record.side.as_str(),
        trace_id: hex(&record.context.trace_id),
        span_id: hex(&record.context.span_id),
        parent_span_id: record.parent.map(|p| hex(&p)),
        request_id: &record.request_id,
        identity,
        peer_identity,
        service: record.service.as_deref(),
        route: record.route.as_deref(),
        method: record.method.as_str(),
        path: &record.path,
        status: record.status,
        error: record.error,
        // Microseconds, as milliseconds: readable, and exact enough for a mesh hop.
        duration_ms: record.duration.as_micros() as f64 / 1000.0,
        retries: record.retries,
    };
    if serde_json::to_writer(&mut *out, &entry).is_ok() {
        out.push(b'\n');
    }
}

/// An access log line; docs/tracing.md describes each field.
#[derive(Serialize)]
struct Line<'a> {
    timestamp: String,
    direction: &'static str,
    trace_id: String,
    span_id: String,
    parent_span_id: Option<String>,
    request_id: &'a str,
    identity: Option<&'a str>,
    peer_identity: Option<&'a str>,
    service: Option<&'a str>,
    route: Option<&'a str>,
    method: &'a str,
    path: &'a str,
    status: u16,
    error: Option<&'a str>,
    duration_ms: f64,
    retries: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::record::sample as record;

    #[test]
    fn a_line_is_one_json_object_with_every_field() {
        let mut out = Vec::new();
        line(
            &record(),
            Some("spiffe://cluster.local/ns/shop/sa/orders"),
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with('\n') && text.matches('\n').count() == 1,
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "timestamp": "2025-12-31T23:59:59.999999Z",
                "direction": "outbound",
                "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                "span_id": "00f067aa0ba902b7",
                "parent_span_id": "0102030405060708",
                "request_id": "req-1",
                "identity": "spiffe://cluster.local/ns/shop/sa/orders",
                "peer_identity": "spiffe://cluster.local/ns/shop/sa/payments",
                "service": "payments.shop",
                "route": "charge",
                "method": "POST",
                "path": "/charge \"now\"",
                "status": 504,
                "error": "timeout",
                "duration_ms": 1.234,
                "retries": 2,
            })
        );
    }

    #[test]
    fn the_writer_writes_whole_lines_and_stops_with_its_senders() {
        let (queue, records) = sync_channel(8);
        for _ in 0..3 {
            queue.try_send(Entry::Record(Arc::new(record()))).unwrap();
        }
        drop(queue);
        let mut out = Vec::new();
        write_lines(&records, || None, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 3);
        for line in text.lines() {
            let json: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(
                json["identity"],
                serde_json::Value::Null,
                "no certificate yet"
            );
        }
    }

    /// Output a test can read while the writer thread holds its writer.
    #[derive(Clone, Default)]
    struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_flush_returns_once_the_lines_before_it_are_written() {
        let counters = Arc::new(TraceCounters::default());
        let (queue, entries) = sync_channel(8);
        let out = Shared::default();
        let writer = {
            let out = out.clone();
            std::thread::spawn(move || write_lines(&entries, || None, out))
        };
        let log = AccessLog::to_queue(queue.clone(), counters);
        for _ in 0..5 {
            log.push(Arc::new(record()));
        }
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        AccessLogFlush(queue).flush(deadline).await;
        let written = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(written.lines().count(), 5, "{written}");
        drop(log);
        writer.join().unwrap();
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let counters = Arc::new(TraceCounters::default());
        let (queue, _records) = sync_channel(2);
        let log = AccessLog::to_queue(queue, counters.clone());
        for _ in 0..5 {
            log.push(Arc::new(record()));
        }
        assert_eq!(counters.access_log_dropped.get(), 3);
    }
}
