//! The whole-request deadline: the routed request's limit, counted from when the stack
//! took it, ends everything below (retries, backoff, tries) with 504 `timeout`. The
//! layers below read the deadline to send the remaining budget to the next hop and to
//! start no retry that could not finish.

use std::task::{Context, Poll};
use std::time::Duration;

use http::Response;
use tower::{Layer, Service};

use super::Routed;
use super::cutoff::{CutOff, Expiry};
use crate::error::{ErrorCode, ProxyError};

#[derive(Clone)]
pub(crate) struct Deadline<S> {
    inner: S,
}

pub(crate) struct DeadlineLayer;

impl Deadline<()> {
    pub(crate) fn layer() -> DeadlineLayer {
        DeadlineLayer
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline { inner }
    }
}

impl<'a, S, B> Service<Routed<'a>> for Deadline<S>
where
    S: Service<Routed<'a>, Response = Response<B>, Error = ProxyError>,
{
    type Response = Response<B>;
    type Error = ProxyError;
    type Future = CutOff<S::Future, RequestLimit>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Routed<'a>) -> Self::Future {
        let deadline = req.limit.map(|limit| req.started + limit);
        req.deadline = deadline;
        let limit = RequestLimit(req.limit.unwrap_or_default());
        CutOff::new(self.inner.call(req), deadline, limit)
    }
}

/// The whole-request limit, for its 504.
pub(crate) struct RequestLimit(Duration);

impl Expiry for RequestLimit {
    type Error = ProxyError;

    fn error(&self) -> ProxyError {
        ProxyError::new(
            ErrorCode::Timeout,
            format!("no response within {} ms", self.0.as_millis()),
        )
    }
}
