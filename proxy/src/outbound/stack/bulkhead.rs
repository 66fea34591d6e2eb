//! The destination service's bulkhead, per try: a try is admitted when the service is
//! made ready (a free slot, or a place in the queue for at most `queueTimeout`) and holds
//! its slot until it ends; a full bulkhead fails the try with 503 `bulkhead-full` at
//! once, without touching the upstream, and no retry can mend that.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::{Try, TryError};
use crate::error::{ErrorCode, ProxyError};
use crate::outbound::Target;
use crate::resilience::concurrency_limit::{Admission, Rejected};
use crate::resilience::counters::ResilienceCounters;

/// Waiting in the bulkhead's queue (boxed: only when no slot is free at once).
type Queued<'a> = Pin<Box<dyn Future<Output = Result<Admission, Rejected>> + Send + 'a>>;

pub(crate) struct Bulkhead<'a, S> {
    target: &'a Target,
    inner: S,
    queued: Option<Queued<'a>>,
    admitted: Option<Admission>,
}

/// A copy waits for its own admission.
impl<S: Clone> Clone for Bulkhead<'_, S> {
    fn clone(&self) -> Self {
        Bulkhead {
            target: self.target,
            inner: self.inner.clone(),
            queued: None,
            admitted: None,
        }
    }
}

pub(crate) struct BulkheadLayer<'a>(&'a Target);

impl<'a> Bulkhead<'a, ()> {
    pub(crate) fn layer(target: &'a Target) -> BulkheadLayer<'a> {
        BulkheadLayer(target)
    }
}

impl<'a, S> Layer<S> for BulkheadLayer<'a> {
    type Service = Bulkhead<'a, S>;

    fn layer(&self, inner: S) -> Self::Service {
        Bulkhead {
            target: self.0,
            inner,
            queued: None,
            admitted: None,
        }
    }
}

impl<'a, S, B> Service<Try> for Bulkhead<'a, S>
where
    S: Service<Try, Response = Response<B>, Error = TryError>,
{
    type Response = Response<B>;
    type Error = TryError;
    type Future = Admitted<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TryError>> {
        if self.admitted.is_none() {
            let bulkhead = &self.target.bulkhead;
            let admitted = match self.queued.as_mut() {
                Some(queued) => ready!(queued.as_mut().poll(cx)),
                None => match bulkhead.try_admit() {
                    Some(admission) => Ok(admission),
                    None => {
                        let queued = self.queued.insert(Box::pin(bulkhead.admit()));
                        ready!(queued.as_mut().poll(cx))
                    }
                },
            };
            self.queued = None;
            match admitted {
                Ok(admission) => self.admitted = Some(admission),
                Err(rejected) => return Poll::Ready(Err(self.rejected(rejected))),
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Try) -> Self::Future {
        let admission = self.admitted.take();
        debug_assert!(admission.is_some(), "called before the bulkhead admitted");
        Admitted {
            inner: self.inner.call(req),
            _admission: admission,
        }
    }
}

impl<S> Bulkhead<'_, S> {
    fn rejected(&self, rejected: Rejected) -> TryError {
        ResilienceCounters::inc(&self.target.metrics.resilience.bulkhead_rejected);
        let error = ProxyError::new(
            ErrorCode::BulkheadFull,
            format!(
                "bulkhead full for {}: {rejected:?}",
                self.target.metrics.service()
            ),
        );
        TryError::new(error, None)
    }
}

pin_project! {
    /// The try below, holding its slot in the bulkhead until it is done.
    pub(crate) struct Admitted<F> {
        #[pin]
        inner: F,
        _admission: Option<Admission>,
    }
}

impl<F: Future> Future for Admitted<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().inner.poll(cx)
    }
}
