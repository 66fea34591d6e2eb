//! The balancer: picks the try's endpoint as the service's policy balances, among those
//! whose circuit breaker lets requests through. It remembers the endpoint of its previous
//! try (the retry layer keeps one copy per request), so that a retry prefers another.
//! No usable endpoint fails the try with `no-endpoints` or `circuit-open`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::{Picked, Try, TryError};
use crate::balance::Balanced;
use crate::error::{ErrorCode, ProxyError};
use crate::outbound::{Pick, Target};

#[derive(Clone)]
pub(crate) struct Balance<'a, S> {
    target: &'a Target,
    inner: S,
    /// The endpoint of this request's previous try.
    previous: Option<SocketAddr>,
}

pub(crate) struct BalanceLayer<'a>(&'a Target);

impl<'a> Balance<'a, ()> {
    pub(crate) fn layer(target: &'a Target) -> BalanceLayer<'a> {
        BalanceLayer(target)
    }
}

impl<'a, S> Layer<S> for BalanceLayer<'a> {
    type Service = Balance<'a, S>;

    fn layer(&self, inner: S) -> Self::Service {
        Balance {
            target: self.0,
            inner,
            previous: None,
        }
    }
}

impl<'a, S, B> Service<Try> for Balance<'a, S>
where
    S: Service<Picked<'a>, Response = Response<B>, Error = TryError>,
{
    type Response = Response<B>;
    type Error = TryError;
    type Future = PickFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TryError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Try) -> Self::Future {
        let now = tokio::time::Instant::now();
        let endpoint = match self.target.pick(now, self.previous) {
            Pick::Endpoint(endpoint) => endpoint,
            Pick::NoEndpoints => {
                let error = ProxyError::new(ErrorCode::NoEndpoints, "the service has no endpoints");
                return PickFuture::failed(error);
            }
            Pick::AllOpen => {
                let error = ProxyError::new(
                    ErrorCode::CircuitOpen,
                    "every endpoint's circuit breaker is open",
                );
                return PickFuture::failed(error);
            }
        };
        self.previous = Some(endpoint.addr());
        // The balancer's view: in flight from the pick (the endpoint layer ends it).
        let picked = Picked {
            request: req.request,
            per_try_timeout: req.per_try_timeout,
            endpoint,
            in_flight: endpoint.load().start(now),
            try_deadline: None,
        };
        PickFuture::Sent {
            inner: self.inner.call(picked),
        }
    }
}

pin_project! {
    /// The try on its endpoint, or the reason there was none.
    #[project = PickProj]
    pub(crate) enum PickFuture<F> {
        Sent { #[pin] inner: F },
        Failed { error: Option<TryError> },
    }
}

impl<F> PickFuture<F> {
    fn failed(error: ProxyError) -> Self {
        PickFuture::Failed {
            error: Some(TryError::new(error, None)),
        }
    }
}

impl<F, B> Future for PickFuture<F>
where
    F: Future<Output = Result<Response<B>, TryError>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        match self.project() {
            PickProj::Sent { inner } => inner.poll(cx),
            PickProj::Failed { error } => match error.take() {
                Some(error) => Poll::Ready(Err(error)),
                None => Poll::Pending,
            },
        }
    }
}
