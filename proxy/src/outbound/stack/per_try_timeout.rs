//! The per-try timeout (`retries.perTryTimeout`): a try with no response by then fails
//! with 504 `timeout`, an outcome `retryOn` may retry. The deadline is handed down so
//! that breaker accounting counts a try cut short here as a failure.

use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Response;
use tokio::time::Instant;
use tower::{Layer, Service};

use super::cutoff::{CutOff, Expiry};
use super::{Picked, TryError};
use crate::error::{ErrorCode, ProxyError};
use crate::resilience::retry_on::TryOutcome;

#[derive(Clone)]
pub(crate) struct PerTryTimeout<S> {
    inner: S,
}

pub(crate) struct PerTryTimeoutLayer;

impl PerTryTimeout<()> {
    pub(crate) fn layer() -> PerTryTimeoutLayer {
        PerTryTimeoutLayer
    }
}

impl<S> Layer<S> for PerTryTimeoutLayer {
    type Service = PerTryTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PerTryTimeout { inner }
    }
}

impl<'a, S, B> Service<Picked<'a>> for PerTryTimeout<S>
where
    S: Service<Picked<'a>, Response = Response<B>, Error = TryError>,
{
    type Response = Response<B>;
    type Error = TryError;
    type Future = CutOff<S::Future, TryLimit>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TryError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Picked<'a>) -> Self::Future {
        let expiry = TryLimit {
            limit: req.per_try_timeout.unwrap_or_default(),
            addr: req.endpoint.addr(),
        };
        let deadline = req.per_try_timeout.map(|limit| Instant::now() + limit);
        req.try_deadline = deadline;
        CutOff::new(self.inner.call(req), deadline, expiry)
    }
}

/// The per-try limit, for its 504 (a `retryOn` timeout outcome).
pub(crate) struct TryLimit {
    limit: Duration,
    addr: SocketAddr,
}

impl Expiry for TryLimit {
    type Error = TryError;

    fn error(&self) -> TryError {
        let error = ProxyError::new(
            ErrorCode::Timeout,
            format!(
                "{}: no response within the per-try timeout of {} ms",
                self.addr,
                self.limit.as_millis()
            ),
        );
        TryError::new(error, Some(TryOutcome::Timeout))
    }
}
