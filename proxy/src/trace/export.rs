//! Span export: finished spans wait in a bounded queue, a task takes them in batches
//! (up to [`BATCH`] spans, or what came within the batch interval of the first) and
//! POSTs each batch to the collector. A request only offers its span to the queue; a
//! full queue (the collector slow or gone) drops the span and counts it, so the request
//! path never waits on the collector.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;
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

impl SpanQueue {
    /// Starts the export task (on the current runtime).
    pub(crate) fn start(
        settings: ExportSettings,
        source: Source,
        identity: Arc<Identity>,
        counters: Arc<TraceCounters>,
    ) -> SpanQueue {
        let (queue, spans) = mpsc::channel(settings.queue_size);
        let collector = Collector::new(settings.traces_uri);
        tokio::spawn(export_forever(
            spans,
            collector,
            source,
            identity,
            settings.interval,
            counters.clone(),
        ));
        SpanQueue { queue, counters }
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

async fn export_forever(
    mut spans: mpsc::Receiver<Arc<Record>>,
    collector: Collector,
    source: Source,
    identity: Arc<Identity>,
    interval: Duration,
    counters: Arc<TraceCounters>,
) {
    let mut failing = false;
    while let Some(batch) = next_batch(&mut spans, BATCH, interval).await {
        let own = identity.id().map(|id| id.as_str());
        let body = otlp::encode(&source, own, &batch);
        match collector.post(body).await {
            Ok(()) => {
                TraceCounters::add(&counters.spans_exported, batch.len());
                if failing {
                    tracing::info!(collector = %collector.uri, "span export works again");
                    failing = false;
                }
            }
            Err(reason) => {
                TraceCounters::add(&counters.spans_failed, batch.len());
                // Once per outage, not once per batch: the counter tells the rest.
                if !failing {
                    tracing::warn!(collector = %collector.uri, %reason, "span export failed; spans are lost until it works");
                    failing = true;
                }
            }
        }
    }
}

/// The next batch: waits for a first span (`None` once the queue is closed and empty),
/// then takes more until `max` or until `interval` has passed since the first.
pub(crate) async fn next_batch<T>(
    queue: &mut mpsc::Receiver<T>,
    max: usize,
    interval: Duration,
) -> Option<Vec<T>> {
    let first = queue.recv().await?;
    let deadline = Instant::now() + interval;
    let mut batch = Vec::with_capacity(max.min(64));
    batch.push(first);
    while batch.len() < max {
        match tokio::time::timeout_at(deadline, queue.recv()).await {
            Ok(Some(span)) => batch.push(span),
            Ok(None) | Err(_) => break,
        }
    }
    Some(batch)
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
    use std::sync::atomic::Ordering::Relaxed;

    use super::*;
    use crate::trace::record::sample;

    const INTERVAL: Duration = Duration::from_secs(1);

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
        assert_eq!(next_batch(&mut rx, 10, INTERVAL).await, Some(vec![1, 2]));
        assert_eq!(start.elapsed(), INTERVAL);
        assert_eq!(next_batch(&mut rx, 10, INTERVAL).await, Some(vec![3]));
        assert_eq!(start.elapsed(), Duration::from_millis(2_500));
        drop(tx);
        assert_eq!(next_batch(&mut rx, 10, INTERVAL).await, None, "closed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_goes_at_once() {
        let (tx, mut rx) = mpsc::channel(16);
        for i in 0..10 {
            tx.send(i).await.unwrap();
        }
        let start = Instant::now();
        assert_eq!(
            next_batch(&mut rx, 4, INTERVAL).await,
            Some(vec![0, 1, 2, 3])
        );
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test]
    async fn a_full_queue_drops_spans_and_counts_them() {
        let counters = Arc::new(TraceCounters::default());
        let (queue, _spans) = mpsc::channel(2);
        let spans = SpanQueue::to_queue(queue, counters.clone());
        for _ in 0..5 {
            spans.push(Arc::new(sample()));
        }
        assert_eq!(counters.spans_dropped.load(Relaxed), 3);
    }
}
