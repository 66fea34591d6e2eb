//! The per-try timeout (`retries.perTryTimeout`): a try with no response by then fails
//! with 504 `timeout`, an outcome `retryOn` may retry. The deadline is handed down so
//! that breaker accounting counts a try cut short here as a failure.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::Response;
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

use super::{Picked, TryError};
use crate::error::{ErrorCode, ProxyError};
use crate::resilience::retry_on::TryOutcome;

#[derive(Clone)]
pub struct PerTryTimeout<S> {
    inner: S,
}

pub struct PerTryTimeoutLayer;

impl PerTryTimeout<()> {
    pub fn layer() -> PerTryTimeoutLayer {
        PerTryTimeoutLayer
    }
}

impl<S> Layer<S> for PerTryTimeoutLayer {
    type Service = PerTryTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PerTryTimeout { inner }
    }
}

impl<'a, S> Service<Picked<'a>> for PerTryTimeout<S>
where
    S: Service<Picked<'a>, Response = Response<Incoming>, Error = TryError>,
{
    type Response = Response<Incoming>;
    type Error = TryError;
    type Future = PerTryFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TryError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Picked<'a>) -> Self::Future {
        let addr = req.endpoint.addr();
        let limit = req.per_try_timeout;
        let deadline = limit.map(|limit| Instant::now() + limit);
        req.try_deadline = deadline;
        PerTryFuture {
            inner: self.inner.call(req),
            sleep: deadline.map(tokio::time::sleep_until),
            limit: limit.unwrap_or_default(),
            addr,
        }
    }
}

pin_project! {
    /// The try, cut off at its timeout (polled first, as `tokio::time::timeout`).
    pub struct PerTryFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Option<Sleep>,
        limit: Duration,
        addr: SocketAddr,
    }
}

impl<F> Future for PerTryFuture<F>
where
    F: Future<Output = Result<Response<Incoming>, TryError>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.inner.poll(cx) {
            return Poll::Ready(output);
        }
        let Some(sleep) = this.sleep.as_pin_mut() else {
            return Poll::Pending;
        };
        ready!(sleep.poll(cx));
        let error = ProxyError::new(
            ErrorCode::Timeout,
            format!(
                "{}: no response within the per-try timeout of {} ms",
                this.addr,
                this.limit.as_millis()
            ),
        );
        Poll::Ready(Err(TryError::new(error, Some(TryOutcome::Timeout))))
    }
}
