//! One request as tracing sees it: what is known when it arrives ([`Exchange`]), what the
//! side serving it adds (the service, the peer, the route, the retries), and the
//! [`Record`] it becomes when its response head goes back, which the access log and the
//! span exporter read off the request path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::Duration;

use http::Method;
use tokio::time::Instant;

use super::context::TraceContext;

/// Which side of the sidecar served the request: inbound is the callee's span (SERVER),
/// outbound the caller's (CLIENT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Inbound,
    Outbound,
}

impl Side {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Side::Inbound => "inbound",
            Side::Outbound => "outbound",
        }
    }
}

/// The number of retries a request took, written by the outbound retry layer. It rides
/// in the request's extensions, so only a request being recorded carries one.
#[derive(Clone, Debug, Default)]
pub(crate) struct RetryCount(Arc<AtomicU32>);

impl RetryCount {
    pub(crate) fn set(&self, retries: u32) {
        self.0.store(retries, Relaxed);
    }

    pub(crate) fn get(&self) -> u32 {
        self.0.load(Relaxed)
    }
}

/// A request being recorded, from its arrival to its response head.
#[derive(Debug)]
pub(crate) struct Exchange {
    pub(super) side: Side,
    /// This hop's span.
    pub(super) context: TraceContext,
    /// The caller's span, when the request arrived with a valid `traceparent`.
    pub(super) parent: Option<[u8; 8]>,
    pub(super) request_id: String,
    pub(super) method: Method,
    pub(super) path: String,
    pub(super) started: Instant,
    pub(super) started_unix_nanos: u64,
    /// Whether a span goes to the collector (export on, and the trace sampled).
    pub(super) export: bool,
    pub(super) service: Option<Arc<str>>,
    pub(super) route: Option<Arc<str>>,
    pub(super) peer: Option<String>,
    pub(super) retries: Option<RetryCount>,
}

impl Exchange {
    /// Outbound: the service called, the identity its sidecar must present (every mTLS
    /// connection to it checks that identity), and the route; returns the retry count
    /// to attach to the request.
    pub(crate) fn called(&mut self, service: &str, peer: &str, route: Option<&str>) -> RetryCount {
        self.service = Some(Arc::from(service));
        self.peer = Some(peer.to_string());
        self.route = route.map(Arc::from);
        let retries = RetryCount::default();
        self.retries = Some(retries.clone());
        retries
    }

    /// Inbound: who called, as its certificate says (`None`: a plaintext caller).
    pub(crate) fn called_by(&mut self, peer: Option<&str>) {
        self.peer = peer.map(str::to_string);
    }

    pub(super) fn finish(self, status: u16, error: Option<&'static str>) -> Record {
        Record {
            side: self.side,
            context: self.context,
            parent: self.parent,
            request_id: self.request_id,
            method: self.method,
            path: self.path,
            service: self.service,
            route: self.route,
            peer: self.peer,
            status,
            error,
            retries: self.retries.map(|r| r.get()),
            start_unix_nanos: self.started_unix_nanos,
            duration: self.started.elapsed(),
        }
    }
}

/// A request as it ended.
#[derive(Debug)]
pub(crate) struct Record {
    pub side: Side,
    pub context: TraceContext,
    pub parent: Option<[u8; 8]>,
    pub request_id: String,
    pub method: Method,
    pub path: String,
    pub service: Option<Arc<str>>,
    pub route: Option<Arc<str>>,
    pub peer: Option<String>,
    /// The status the caller got.
    pub status: u16,
    /// The mesh error code, when a sidecar made the response.
    pub error: Option<&'static str>,
    /// Outbound only: tries after the first.
    pub retries: Option<u32>,
    pub start_unix_nanos: u64,
    /// Until the response head; the body streams after.
    pub duration: Duration,
}

impl Record {
    pub(crate) fn end_unix_nanos(&self) -> u64 {
        let nanos = u64::try_from(self.duration.as_nanos()).unwrap_or(u64::MAX);
        self.start_unix_nanos.saturating_add(nanos)
    }

    /// Whether the request failed: a server error or a mesh error.
    pub(crate) fn failed(&self) -> bool {
        self.status >= 500 || self.error.is_some()
    }
}

/// A finished outbound request that failed after two retries, for tests.
#[cfg(test)]
pub(crate) fn sample() -> Record {
    Record {
        side: Side::Outbound,
        context: TraceContext::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .unwrap(),
        parent: Some([1, 2, 3, 4, 5, 6, 7, 8]),
        request_id: "req-1".into(),
        method: http::Method::POST,
        path: "/charge \"now\"".into(),
        service: Some("payments.shop".into()),
        route: Some("charge".into()),
        peer: Some("spiffe://cluster.local/ns/shop/sa/payments".into()),
        status: 504,
        error: Some("timeout"),
        retries: Some(2),
        start_unix_nanos: 1_767_225_599_999_999_999,
        duration: Duration::from_micros(1_234),
    }
}
