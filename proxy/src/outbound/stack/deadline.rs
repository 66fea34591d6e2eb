//! The whole-request deadline: the routed request's limit, counted from when the stack
//! took it, ends everything below (retries, backoff, tries) with 504 `timeout`. The
//! layers below read the deadline to send the remaining budget to the next hop and to
//! start no retry that could not finish.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::Response;
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower::{Layer, Service};

use super::Routed;
use crate::error::{ErrorCode, ProxyError};

#[derive(Clone)]
pub struct Deadline<S> {
    inner: S,
}

pub struct DeadlineLayer;

impl Deadline<()> {
    pub fn layer() -> DeadlineLayer {
        DeadlineLayer
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline { inner }
    }
}

impl<'a, S> Service<Routed<'a>> for Deadline<S>
where
    S: Service<Routed<'a>, Response = Response<Incoming>, Error = ProxyError>,
{
    type Response = Response<Incoming>;
    type Error = ProxyError;
    type Future = DeadlineFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Routed<'a>) -> Self::Future {
        let deadline = req.limit.map(|limit| req.started + limit);
        req.deadline = deadline;
        let limit = req.limit.unwrap_or_default();
        DeadlineFuture {
            inner: self.inner.call(req),
            sleep: deadline.map(tokio::time::sleep_until),
            limit,
        }
    }
}

pin_project! {
    /// The inner future, cut off at the deadline (polled first, as `tokio::time::timeout`).
    pub struct DeadlineFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Option<Sleep>,
        limit: Duration,
    }
}

impl<F> Future for DeadlineFuture<F>
where
    F: Future<Output = Result<Response<Incoming>, ProxyError>>,
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
        Poll::Ready(Err(ProxyError::new(
            ErrorCode::Timeout,
            format!("no response within {} ms", this.limit.as_millis()),
        )))
    }
}
