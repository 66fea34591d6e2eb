//! The route: the first matching route's policy, the request's time limit (the route's
//! timeout or the budget the request arrived with, the sooner), whether it may be
//! retried, and the request rewritten for the mesh hop. A request that may be retried has
//! its body read into memory here, before the deadline layer starts enforcing, as the
//! deadline counts from the moment the stack took the request.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use outrigger_api::Fallback;
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::{Layer, Service};

use super::retry::RETRY_ATTEMPT_HEADER;
use super::{AppRequest, Routed};
use crate::error::{ErrorCode, ProxyError};
use crate::outbound::Target;
use crate::outbound::request::prepare;
use crate::resilience::deadline;
use crate::resilience::policy::RoutePolicy;
use crate::resilience::replay::OutboundBody;
use crate::resilience::retry_on::idempotent;

/// A request that failed, with the fallback its route answers with while every circuit
/// is open.
#[derive(Debug)]
pub(crate) struct RouteError<'a> {
    pub error: ProxyError,
    pub fallback: Option<&'a Fallback>,
}

#[derive(Clone)]
pub(crate) struct Route<'a, S> {
    target: &'a Target,
    inner: S,
}

pub(crate) struct RouteLayer<'a>(&'a Target);

impl<'a> Route<'a, ()> {
    pub(crate) fn layer(target: &'a Target) -> RouteLayer<'a> {
        RouteLayer(target)
    }
}

impl<'a, S> Layer<S> for RouteLayer<'a> {
    type Service = Route<'a, S>;

    fn layer(&self, inner: S) -> Self::Service {
        Route {
            target: self.0,
            inner,
        }
    }
}

impl<'a, S, B> Service<AppRequest> for Route<'a, S>
where
    S: Service<Routed<'a>, Response = Response<B>, Error = ProxyError> + Clone,
{
    type Response = Response<B>;
    type Error = RouteError<'a>;
    type Future = RouteFuture<'a, S, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(|error| RouteError {
            error,
            fallback: None,
        })
    }

    fn call(&mut self, req: AppRequest) -> Self::Future {
        let target: &'a Target = self.target;
        let route = target.resolved.route_at(req.route);
        // The readied service goes with the request; a copy stays for the next.
        let copy = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, copy);
        RouteFuture {
            state: State::Reading {
                read: Box::pin(routed(route, req)),
                inner: Some(inner),
            },
            fallback: route.fallback.as_ref(),
        }
    }
}

/// The request routed: its limit, whether it may be retried, its head prepared and its
/// body read if it may be.
async fn routed(route: &RoutePolicy, req: AppRequest) -> Result<Routed<'_>, ProxyError> {
    let AppRequest {
        request, authority, ..
    } = req;
    let (mut head, body) = request.into_parts();
    let started = Instant::now();
    let limit = match (
        route.request_timeout,
        deadline::incoming_budget(&head.headers),
    ) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    // A request that is already a retry upstream is tried once here. Every gRPC call is
    // a POST, which says nothing about whether it may be repeated: for gRPC, the
    // route's retryOn decides (as gRPC's own retry policy does).
    let may_retry = route.retry.attempts > 0
        && (route.retry.non_idempotent
            || idempotent(&head.method)
            || crate::error::is_grpc(&head.headers))
        && !head.headers.contains_key(RETRY_ATTEMPT_HEADER);
    prepare(&mut head, authority)?;
    let body = if may_retry {
        OutboundBody::from_incoming(body).await.map_err(|e| {
            ProxyError::new(
                ErrorCode::BadRequest,
                format!("reading the request body: {e}"),
            )
        })?
    } else {
        OutboundBody::Streaming {
            prefix: None,
            rest: body,
        }
    };
    Ok(Routed {
        head,
        body,
        route,
        may_retry,
        limit,
        started,
        deadline: None,
    })
}

/// Reading the body (boxed: an `async fn` whose future cannot be named).
type Reading<'a> = Pin<Box<dyn Future<Output = Result<Routed<'a>, ProxyError>> + Send + 'a>>;

pin_project! {
    /// The request routed, then sent down the stack.
    pub(crate) struct RouteFuture<'a, S, F> {
        #[pin]
        state: State<'a, S, F>,
        fallback: Option<&'a Fallback>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<'a, S, F> {
        Reading { read: Reading<'a>, inner: Option<S> },
        Calling { #[pin] call: F },
    }
}

impl<'a, S, B> Future for RouteFuture<'a, S, S::Future>
where
    S: Service<Routed<'a>, Response = Response<B>, Error = ProxyError>,
{
    type Output = Result<Response<B>, RouteError<'a>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fallback = self.fallback;
        let fail = |error| RouteError { error, fallback };
        loop {
            let call = match self.as_mut().project().state.project() {
                StateProj::Reading { read, inner } => {
                    let routed = ready!(read.as_mut().poll(cx)).map_err(fail)?;
                    match inner.take() {
                        Some(mut inner) => inner.call(routed),
                        None => return Poll::Pending,
                    }
                }
                StateProj::Calling { call } => return call.poll(cx).map_err(fail),
            };
            self.as_mut().project().state.set(State::Calling { call });
        }
    }
}
