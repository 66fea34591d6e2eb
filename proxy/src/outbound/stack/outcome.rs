//! RecordOutcome accounting: each try's outcome goes to its endpoint's circuit (a response
//! below 500 is healthy; a 5xx, a failed connect or send, or a per-try timeout is not).
//! Off the request path: `record` only queues the outcome for the breaker's task. A try
//! abandoned for another reason (the whole-request deadline, the caller gone) says
//! nothing about the endpoint and is not counted.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::{Layer, Service};

use super::{Picked, TryError};
use crate::outbound::endpoint::Endpoint;

#[derive(Clone)]
pub(crate) struct RecordOutcome<S> {
    inner: S,
}

pub(crate) struct RecordOutcomeLayer;

impl RecordOutcome<()> {
    pub(crate) fn layer() -> RecordOutcomeLayer {
        RecordOutcomeLayer
    }
}

impl<S> Layer<S> for RecordOutcomeLayer {
    type Service = RecordOutcome<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RecordOutcome { inner }
    }
}

impl<'a, S, B> Service<Picked<'a>> for RecordOutcome<S>
where
    S: Service<Picked<'a>, Response = Response<B>, Error = TryError>,
{
    type Response = Response<B>;
    type Error = TryError;
    type Future = Accounted<'a, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TryError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Picked<'a>) -> Self::Future {
        let account = Account {
            endpoint: req.endpoint,
            try_deadline: req.try_deadline,
            recorded: false,
        };
        Accounted {
            inner: self.inner.call(req),
            account,
        }
    }
}

pin_project! {
    /// The try, its outcome recorded when it ends.
    pub(crate) struct Accounted<'a, F> {
        #[pin]
        inner: F,
        account: Account<'a>,
    }
}

impl<F, B> Future for Accounted<'_, F>
where
    F: Future<Output = Result<Response<B>, TryError>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let sent = ready!(this.inner.poll(cx));
        let healthy = matches!(&sent, Ok(response) if !response.status().is_server_error());
        this.account.record(healthy);
        Poll::Ready(sent)
    }
}

/// Records a try's outcome once: when it ends, or when the per-try timeout drops it.
struct Account<'a> {
    endpoint: &'a Endpoint,
    try_deadline: Option<Instant>,
    recorded: bool,
}

impl Account<'_> {
    fn record(&mut self, healthy: bool) {
        self.recorded = true;
        self.endpoint.circuit().record(healthy);
    }
}

impl Drop for Account<'_> {
    fn drop(&mut self) {
        // Dropped unfinished: a failure if the per-try timeout ended it.
        if !self.recorded && self.try_deadline.is_some_and(|d| Instant::now() >= d) {
            self.record(false);
        }
    }
}
