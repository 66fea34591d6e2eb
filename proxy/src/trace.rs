//! Tracing (docs/tracing.md). Always: every request leaves with a `traceparent` whose
//! span is this hop's (a new trace when it came with none, or an invalid one) and with
//! an `x-request-id`. When turned on: a JSON access log line and an OTLP span per
//! request, handed to a writer thread and an export task through bounded queues. With
//! both off, a request costs the header handling and nothing more.

mod access_log;
mod context;
mod counters;
mod export;
mod otlp;
mod record;
mod request_id;
mod wall_clock;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderName, Request, Response};
use tokio::time::Instant;

pub(crate) use counters::TraceCounters;
pub(crate) use record::{Exchange, RetryCount};

use self::access_log::{AccessLog, AccessLogFlush};
use self::context::TraceContext;
use self::export::{ExportSettings, ExportTask, SpanQueue};
use self::otlp::Source;
use self::record::{Record, Side};
use crate::config::{AccessLogFormat, TraceSettings};
use crate::error::{ERROR_HEADER, ErrorCode};
use crate::identity::Identity;

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// How long a shutdown waits for queued lines and spans to go out: a collector that is
/// down must not hold the exit for long.
const FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// Where finished requests go; built once, shared by both sides.
pub(crate) struct Tracing {
    pub counters: Arc<TraceCounters>,
    sinks: Option<Arc<Sinks>>,
    /// To write and send what is queued at shutdown.
    access_log_flush: Option<AccessLogFlush>,
    export_task: Option<ExportTask>,
}

struct Sinks {
    access_log: Option<AccessLog>,
    spans: Option<SpanQueue>,
}

impl Tracing {
    /// Starts the access log writer and the span exporter that `settings` turn on.
    /// `service` names this proxy's spans (`service.name`).
    pub(crate) fn start(
        settings: &TraceSettings,
        identity: &Arc<Identity>,
        service: &str,
    ) -> Tracing {
        let counters = Arc::new(TraceCounters::default());
        let (access_log, access_log_flush) = match settings.access_log {
            AccessLogFormat::Json => {
                let (log, flush) = AccessLog::start(identity.clone(), counters.clone());
                (Some(log), Some(flush))
            }
            AccessLogFormat::Off => (None, None),
        };
        let exporter = settings.otlp_endpoint.as_ref().map(|uri| {
            SpanQueue::start(
                ExportSettings {
                    traces_uri: uri.clone(),
                    interval: settings.otlp_batch_interval,
                    queue_size: usize::try_from(settings.otlp_queue_size).unwrap_or(usize::MAX),
                },
                Source {
                    service_name: service.to_string(),
                },
                identity.clone(),
                counters.clone(),
            )
        });
        let (spans, export_task) = match exporter {
            Some((spans, task)) => (Some(spans), Some(task)),
            None => (None, None),
        };
        let sinks = (access_log.is_some() || spans.is_some())
            .then(|| Arc::new(Sinks { access_log, spans }));
        Tracing {
            counters,
            sinks,
            access_log_flush,
            export_task,
        }
    }

    /// At shutdown, once no request is left: writes the queued access log lines and
    /// sends the queued spans, waiting [`FLUSH_LIMIT`] at most.
    pub(crate) async fn finish(self) {
        let deadline = Instant::now() + FLUSH_LIMIT;
        let lines = async {
            if let Some(flush) = self.access_log_flush {
                flush.flush(deadline).await;
            }
        };
        let spans = async {
            if let Some(task) = self.export_task {
                task.flush(deadline).await;
            }
        };
        tokio::join!(lines, spans);
    }

    /// The tracer of the outbound side.
    pub(crate) fn outbound(&self) -> Tracer {
        Tracer {
            side: Side::Outbound,
            service: None,
            sinks: self.sinks.clone(),
        }
    }

    /// The tracer of the inbound side, serving `service`.
    pub(crate) fn inbound(&self, service: &str) -> Tracer {
        Tracer {
            side: Side::Inbound,
            service: Some(Arc::from(service)),
            sinks: self.sinks.clone(),
        }
    }
}

/// One side's hook on each request: [`Tracer::begin`] as it arrives, [`Tracer::end`]
/// with its response head.
pub(crate) struct Tracer {
    side: Side,
    /// The inbound side's own service; outbound, the request's side names it.
    service: Option<Arc<str>>,
    sinks: Option<Arc<Sinks>>,
}

impl Tracer {
    /// Continues the request's trace with this hop's span (or starts one), makes sure it
    /// has an `x-request-id`, and returns its [`Exchange`] when it is to be recorded.
    pub(crate) fn begin<B>(&self, request: &mut Request<B>) -> Option<Exchange> {
        let headers = request.headers_mut();
        let mut values = headers.get_all(&TRACEPARENT).iter();
        // Two `traceparent` headers are as bad as an invalid one.
        let parent = match (values.next(), values.next()) {
            (Some(value), None) => TraceContext::parse(value.as_bytes()),
            _ => None,
        };
        let context = match &parent {
            Some(parent) => parent.child(),
            None => TraceContext::new_root(),
        };
        headers.insert(TRACEPARENT, context.header_value());
        request_id::ensure(headers);

        let sinks = self.sinks.as_ref()?;
        let export = sinks.spans.is_some() && context.sampled();
        if sinks.access_log.is_none() && !export {
            return None;
        }
        let request_id = headers
            .get(&request_id::REQUEST_ID_HEADER)
            .map(|id| String::from_utf8_lossy(id.as_bytes()).into_owned())
            .unwrap_or_default();
        Some(Exchange {
            side: self.side,
            context,
            parent: parent.map(|p| p.span_id),
            request_id,
            method: request.method().clone(),
            path: request.uri().path().to_string(),
            started: Instant::now(),
            started_unix_nanos: wall_clock::unix_nanos(SystemTime::now()),
            export,
            service: self.service.clone(),
            route: None,
            peer: None,
            retries: None,
        })
    }

    /// Records `exchange` with what its caller got: the status, and the mesh error
    /// that `outrigger-error` names (made by this sidecar or the peer's).
    pub(crate) fn end<B>(&self, exchange: Option<Exchange>, response: &Response<B>) {
        let (Some(exchange), Some(sinks)) = (exchange, &self.sinks) else {
            return;
        };
        let error = response
            .headers()
            .get(ERROR_HEADER)
            .and_then(|value| {
                ErrorCode::ALL
                    .iter()
                    .find(|c| c.as_str().as_bytes() == value.as_bytes())
            })
            .map(|code| code.as_str());
        let export = exchange.export;
        let record: Arc<Record> = Arc::new(exchange.finish(response.status().as_u16(), error));
        if let Some(log) = &sinks.access_log {
            log.push(record.clone());
        }
        if let (Some(spans), true) = (&sinks.spans, export) {
            spans.push(record);
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn request(headers: &[(&str, &str)]) -> Request<()> {
        let mut request = Request::builder().method("POST").uri("/charge?x=1");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap()
    }

    fn traceparent(request: &Request<()>) -> TraceContext {
        let values: Vec<_> = request.headers().get_all("traceparent").iter().collect();
        assert_eq!(values.len(), 1);
        TraceContext::parse(values[0].as_bytes()).expect("a valid traceparent")
    }

    fn off() -> Tracer {
        Tracer {
            side: Side::Outbound,
            service: None,
            sinks: None,
        }
    }

    /// A tracer with an access log (and spans, if `spans`) whose records the test reads.
    fn recording(
        side: Side,
        spans: bool,
    ) -> (
        Tracer,
        std::sync::mpsc::Receiver<access_log::Entry>,
        tokio::sync::mpsc::Receiver<Arc<Record>>,
    ) {
        let counters = Arc::new(TraceCounters::default());
        let (log_tx, log_rx) = std::sync::mpsc::sync_channel(8);
        let (span_tx, span_rx) = tokio::sync::mpsc::channel(8);
        let sinks = Sinks {
            access_log: (!spans).then(|| AccessLog::to_queue(log_tx, counters.clone())),
            spans: spans.then(|| SpanQueue::to_queue(span_tx, counters)),
        };
        let tracer = Tracer {
            side,
            service: Some(Arc::from("payments")),
            sinks: Some(Arc::new(sinks)),
        };
        (tracer, log_rx, span_rx)
    }

    #[test]
    fn a_request_without_context_starts_a_trace_and_gets_a_request_id() {
        let mut request = request(&[]);
        assert!(
            off().begin(&mut request).is_none(),
            "nothing recorded when off"
        );
        let context = traceparent(&request);
        assert!(context.sampled());
        let id = request.headers()["x-request-id"].to_str().unwrap();
        assert_eq!(id.len(), 36, "{id}");
    }

    #[test]
    fn a_request_with_context_continues_its_trace_with_a_new_span() {
        let mut request = request(&[
            ("traceparent", PARENT),
            ("tracestate", "vendor=opaque"),
            ("x-request-id", "abc"),
        ]);
        off().begin(&mut request);
        let parent = TraceContext::parse(PARENT.as_bytes()).unwrap();
        let context = traceparent(&request);
        assert_eq!(context.trace_id, parent.trace_id);
        assert_ne!(context.span_id, parent.span_id);
        assert_eq!(context.flags, parent.flags);
        assert_eq!(request.headers()["tracestate"], "vendor=opaque");
        assert_eq!(request.headers()["x-request-id"], "abc");
    }

    #[test]
    fn an_invalid_or_repeated_traceparent_starts_a_new_trace() {
        let parent = TraceContext::parse(PARENT.as_bytes()).unwrap();
        let upper = PARENT.to_uppercase();
        for headers in [
            vec![("traceparent", upper.as_str())],
            vec![("traceparent", PARENT), ("traceparent", PARENT)],
        ] {
            let mut request = request(&headers);
            off().begin(&mut request);
            assert_ne!(
                traceparent(&request).trace_id,
                parent.trace_id,
                "{headers:?}"
            );
        }
    }

    #[test]
    fn a_recorded_request_ends_as_a_record_with_its_status_and_mesh_error() {
        let (tracer, log, _) = recording(Side::Inbound, false);
        let mut request = request(&[("traceparent", PARENT), ("x-request-id", "abc")]);
        let mut exchange = tracer.begin(&mut request).expect("the access log is on");
        exchange.called_by(Some("spiffe://cluster.local/ns/shop/sa/orders"));
        let mut response = Response::new(());
        *response.status_mut() = http::StatusCode::TOO_MANY_REQUESTS;
        response
            .headers_mut()
            .insert(ERROR_HEADER, HeaderValue::from_static("rate-limited"));
        tracer.end(Some(exchange), &response);

        let Ok(access_log::Entry::Record(record)) = log.try_recv() else {
            panic!("one record");
        };
        assert_eq!(record.side, Side::Inbound);
        assert_eq!(record.context, traceparent(&request), "the span sent on");
        assert_eq!(
            record.parent,
            Some(TraceContext::parse(PARENT.as_bytes()).unwrap().span_id)
        );
        assert_eq!(record.request_id, "abc");
        assert_eq!(record.method, http::Method::POST);
        assert_eq!(record.path, "/charge", "the query stays out of logs");
        assert_eq!(record.service.as_deref(), Some("payments"));
        assert_eq!(
            record.peer.as_deref(),
            Some("spiffe://cluster.local/ns/shop/sa/orders")
        );
        assert_eq!((record.status, record.error), (429, Some("rate-limited")));
        assert_eq!(record.retries, None);
    }

    #[test]
    fn only_known_mesh_errors_are_recorded() {
        let (tracer, log, _) = recording(Side::Outbound, false);
        let exchange = tracer.begin(&mut request(&[]));
        let mut response = Response::new(());
        response
            .headers_mut()
            .insert(ERROR_HEADER, HeaderValue::from_static("made-up"));
        tracer.end(exchange, &response);
        let Ok(access_log::Entry::Record(record)) = log.try_recv() else {
            panic!("one record");
        };
        assert_eq!(record.error, None);
    }

    #[test]
    fn outbound_records_the_called_service_route_and_retries() {
        let (tracer, _, mut spans) = recording(Side::Outbound, true);
        let mut exchange = tracer.begin(&mut request(&[])).expect("spans are on");
        let retries = exchange.called(
            "payments.shop",
            "spiffe://cluster.local/ns/shop/sa/payments",
            Some("charge"),
        );
        retries.set(2);
        tracer.end(Some(exchange), &Response::new(()));
        let record = spans.try_recv().expect("a span");
        assert_eq!(record.service.as_deref(), Some("payments.shop"));
        assert_eq!(record.route.as_deref(), Some("charge"));
        assert_eq!(record.retries, Some(2));
        assert_eq!(record.parent, None, "a new trace's first span");
    }

    #[test]
    fn an_unsampled_trace_makes_no_span() {
        let (tracer, _, mut spans) = recording(Side::Outbound, true);
        let unsampled = PARENT.replace("-01", "-00");
        let mut request = request(&[("traceparent", &unsampled)]);
        assert!(tracer.begin(&mut request).is_none());
        assert!(spans.try_recv().is_err());
        assert!(
            !traceparent(&request).sampled(),
            "the caller's decision is passed on"
        );
    }
}
