//! Span export: finished spans wait in a bounded queue, a task takes them in batches
//! (up to [`BATCH`] spans, or what came within the batch interval of the first) and
//! POSTs each batch to the collector. A request only offers its span to the queue; a
//! full queue (the collector slow or gone) drops the span and counts it, so the request
//! path never waits on the collector. At shutdown, what is queued is sent at once.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::counters::TraceCounters;
use super::otlp::{self, Source};
use super::record::Record;
use crate::identity::Identity;

/// Spans per request to the collector at most; OpenTelemetry SDKs' default batch.
const BATCH: usize = 512;

/// A collector that has not answered by then has lost the batch.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how often spans go.
#[derive(Clone, Debug)]
pub(crate) struct ExportSettings {
    /// The collector's `/v1/traces` URI.
    pub traces_uri: Uri,
    pub interval: Duration,
    pub queue_size: usize,
}

/// The request path's end of the queue.
pub(crate) struct SpanQueue {
    queue: mpsc::Sender<Arc<Record>>,
    counters: Arc<TraceCounters>,
}

/// The export task, held by its owner to flush it at shutdown.
pub(crate) struct ExportTask {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl SpanQueue {
    /// Starts the export task (on the current runtime).
    pub(crate) fn start(
        settings: ExportSettings,
        source: Source,
        identity: Arc<Identity>,
        counters: Arc<TraceCounters>,
    ) -> (SpanQueue, ExportTask) {
        let (queue, spans) = mpsc::channel(settings.queue_size);
        let (stop, stopped) = oneshot::channel();
        let exporter = Exporter {
            collector: Collector::new(settings.traces_uri),
            source,
            identity,
            counters: counters.clone(),
            failing: false,
        };
        let task = tokio::spawn(export_until_stopped(
            spans,
            stopped,
            settings.interval,
            exporter,
        ));
        (SpanQueue { queue, counters }, ExportTask { stop, task })
    }

    /// A queue whose spans go to `queue` (tests read them there).
    #[cfg(test)]
    pub(crate) fn to_queue(queue: mpsc::Sender<Arc<Record>>, counters: Arc<TraceCounters>) -> Self {
        SpanQueue { queue, counters }
    }

    /// Offers a finished span for export, never waiting.
    pub(crate) fn push(&self, record: Arc<Record>) {
        if self.queue.try_send(record).is_err() {
            TraceCounters::inc(&self.counters.spans_dropped);
        }
    }
}

impl ExportTask {
    /// Sends what is queued now and ends the task, or gives up at `deadline`.
    pub(crate) async fn flush(self, deadline: Instant) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout_at(deadline, self.task).await;
    }
}

/// Where batches go: the collector, or a test's list.
trait BatchSink<T> {
    async fn export(&mut self, batch: Vec<T>);
}

/// Batches spans until the queue closes or `stop` fires; then sends what is left.
async fn export_until_stopped<T>(
    mut spans: mpsc::Receiver<T>,
    mut stop: oneshot::Receiver<()>,
    interval: Duration,
    mut sink: impl BatchSink<T>,
) {
    // Owned here, not by the batching future, so that a stop loses no span it held.
    let mut batch = Vec::new();
    loop {
        let open = tokio::select! {
            biased;
            _ = &mut stop => break,
            open = fill(&mut spans, &mut batch, BATCH, interval) => open,
        };
        if !batch.is_empty() {
            sink.export(std::mem::take(&mut batch)).await;
        }
        if !open {
            return;
        }
    }
    while let Ok(span) = spans.try_recv() {
        batch.push(span);
        if batch.len() == BATCH {
            sink.export(std::mem::take(&mut batch)).await;
        }
    }
    if !batch.is_empty() {
        sink.export(batch).await;
    }
}

/// Fills `batch`: waits for a first span if it is empty, then takes more until `max` or
/// until `interval` has passed. False once the queue is closed and empty.
pub(crate) async fn fill<T>(
    queue: &mut mpsc::Receiver<T>,
    batch: &mut Vec<T>,
    max: usize,
    interval: Duration,
) -> bool {
    if batch.is_empty() {
        match queue.recv().await {
            Some(span) => batch.push(span),
            None => return false,
        }
    }
    let deadline = Instant::now() + interval;
    while batch.len() < max {
        match tokio::time::timeout_at(deadline, queue.recv()).await {
            Ok(Some(span)) => batch.push(span),
            Ok(None) => return false,
            Err(_) => break,
        }
    }
    true
}

/// Batches to the collector, counted.
struct Exporter {
    collector: Collector,
    source: Source,
    identity: Arc<Identity>,
    counters: Arc<TraceCounters>,
    /// Whether the last batch failed: a failure is logged once per outage.
    failing: bool,
}

impl BatchSink<Arc<Record>> for Exporter {
    async fn export(&mut self, batch: Vec<Arc<Record>>) {
        let own = self.identity.id().map(|id| id.as_str());
        let body = otlp::encode(&self.source, own, &batch);
        let collector = &self.collector.uri;
        match self.collector.post(body).await {
            Ok(()) => {
                TraceCounters::add(&self.counters.spans_exported, batch.len());
                if self.failing {
                    tracing::info!(%collector, "span export works again");
                    self.failing = false;
                }
            }
            Err(reason) => {
                TraceCounters::add(&self.counters.spans_failed, batch.len());
                if !self.failing {
                    tracing::warn!(%collector, %reason, "span export failed; spans are lost until it works");
                    self.failing = true;
                }
            }
        }
    }
}

/// The collector, over plain HTTP with a pooled connection.
struct Collector {
    client: Client<HttpConnector, Full<Bytes>>,
    uri: Uri,
}

impl Collector {
    fn new(uri: Uri) -> Collector {
        let client = Client::builder(TokioExecutor::new()).build_http();
        Collector { client, uri }
    }

    async fn post(&self, body: Vec<u8>) -> Result<(), String> {
        let mut request = Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = self.uri.clone();
        request
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("{e}"))?;
            let status = response.status();
            // Read the answer to its end, so that the connection is reused.
            let _ = response.into_body().collect().await;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("the collector answered {status}"))
            }
        };
        tokio::time::timeout(EXPORT_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {EXPORT_TIMEOUT:?}")))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::trace::record::sample;

    const INTERVAL: Duration = Duration::from_secs(1);

    async fn next(rx: &mut mpsc::Receiver<u32>, max: usize) -> (bool, Vec<u32>) {
        let mut batch = Vec::new();
        let open = fill(rx, &mut batch, max, INTERVAL).await;
        (open, batch)
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_waits_the_interval_after_its_first_span() {
        let (tx, mut rx) = mpsc::channel(16);
        let start = Instant::now();
        tx.send(1).await.unwrap();
        let later = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            later.send(2).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1_000)).await;
            later.send(3).await.unwrap();
        });
        assert_eq!(next(&mut rx, 10).await, (true, vec![1, 2]));
        assert_eq!(start.elapsed(), INTERVAL);
        assert_eq!(next(&mut rx, 10).await, (true, vec![3]));
        assert_eq!(start.elapsed(), Duration::from_millis(2_500));
        drop(tx);
        assert_eq!(next(&mut rx, 10).await, (false, vec![]), "closed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_goes_at_once() {
        let (tx, mut rx) = mpsc::channel(16);
        for i in 0..10 {
            tx.send(i).await.unwrap();
        }
        let start = Instant::now();
        assert_eq!(next(&mut rx, 4).await, (true, vec![0, 1, 2, 3]));
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    /// Batches as a test sees them.
    #[derive(Clone, Default)]
    struct Batches(Arc<Mutex<Vec<Vec<u32>>>>);

    impl BatchSink<u32> for Batches {
        async fn export(&mut self, batch: Vec<u32>) {
            self.0.lock().unwrap().push(batch);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_sends_every_queued_span_at_once() {
        let (tx, rx) = mpsc::channel(16);
        let (stop, stopped) = oneshot::channel();
        let batches = Batches::default();
        let task = tokio::spawn(export_until_stopped(
            rx,
            stopped,
            Duration::from_secs(3_600),
            batches.clone(),
        ));
        for i in 0..3 {
            tx.send(i).await.unwrap();
        }
        // The task holds these in a batch that would wait an hour.
        tokio::time::sleep(Duration::from_millis(10)).await;
        for i in 3..5 {
            tx.send(i).await.unwrap();
        }
        let start = Instant::now();
        stop.send(()).unwrap();
        task.await.unwrap();
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "no waiting for the interval"
        );
        let sent: Vec<u32> = batches.0.lock().unwrap().concat();
        assert_eq!(sent, [0, 1, 2, 3, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_queue_sends_its_last_batch_and_ends() {
        let (tx, rx) = mpsc::channel(16);
        let (_stop, stopped) = oneshot::channel();
        let batches = Batches::default();
        tx.send(7).await.unwrap();
        drop(tx);
        export_until_stopped(rx, stopped, INTERVAL, batches.clone()).await;
        assert_eq!(*batches.0.lock().unwrap(), [vec![7]]);
    }

    #[tokio::test]
    async fn a_full_queue_drops_spans_and_counts_them() {
        let counters = Arc::new(TraceCounters::default());
        let (queue, _spans) = mpsc::channel(2);
        let spans = SpanQueue::to_queue(queue, counters.clone());
        for _ in 0..5 {
            spans.push(Arc::new(sample()));
        }
        assert_eq!(counters.spans_dropped.get(), 3);
    }
}
