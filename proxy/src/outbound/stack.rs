//! The outbound resilience stack: tower layers in DESIGN.md's order, assembled once in
//! [`stack`]. It is built per request over a borrowed [`Target`] (every layer holds only
//! references and a little per-request state, so building it allocates nothing); the
//! request types below carry what the layers above decided to the layers below.

mod balance;
mod bulkhead;
mod cutoff;
mod deadline;
mod endpoint;
mod outcome;
mod per_try_timeout;
mod retry;
mod route;

use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::uri::Authority;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder};

use crate::balance::InFlight;
use crate::body::held::Held;
use crate::error::ProxyError;
use crate::outbound::Target;
use crate::outbound::endpoint::Endpoint;
use crate::resilience::policy::{RouteIndex, RoutePolicy};
use crate::resilience::replay::OutboundBody;
use crate::resilience::retry_on::TryOutcome;

pub(crate) use route::RouteError;

/// The app's request, the authority it is for, and the route of the called service's
/// policy it matched (looked up once, by the caller of the stack): what enters the stack.
pub(crate) struct AppRequest {
    pub request: Request<Incoming>,
    pub authority: Authority,
    pub route: RouteIndex,
}

/// A routed request: its head prepared for the mesh hop, its body (buffered when it may
/// be retried), and what its route and its caller allow.
pub(crate) struct Routed<'a> {
    pub head: Parts,
    pub body: OutboundBody,
    pub route: &'a RoutePolicy,
    pub may_retry: bool,
    /// The whole-request limit: the route's timeout or the caller's budget, the sooner.
    pub limit: Option<Duration>,
    /// When the stack took the request; the deadline counts from here.
    pub started: Instant,
    /// Set by the deadline layer.
    pub deadline: Option<Instant>,
}

/// One try of a request.
pub(crate) struct Try {
    pub request: Request<OutboundBody>,
    pub per_try_timeout: Option<Duration>,
}

/// A try after the balancer chose its endpoint.
pub(crate) struct Picked<'a> {
    pub request: Request<OutboundBody>,
    pub per_try_timeout: Option<Duration>,
    pub endpoint: &'a Endpoint,
    /// The balancer's view of the try, from the pick to its end.
    pub in_flight: InFlight<'a>,
    /// When the per-try timeout ends the try (set by that layer).
    pub try_deadline: Option<Instant>,
}

/// A failed try, and how it ended for `retryOn` (`None`: no retry can mend it, such as a
/// full bulkhead or open circuits).
#[derive(Debug)]
pub(crate) struct TryError {
    pub error: ProxyError,
    pub outcome: Option<TryOutcome>,
}

impl TryError {
    pub(crate) fn new(error: ProxyError, outcome: Option<TryOutcome>) -> Self {
        TryError { error, outcome }
    }
}

/// The outbound stack for one request to `target`, in the order the request passes:
/// route, whole-request deadline, retries with the budget, bulkhead, balancer (skipping
/// open breakers), per-try timeout, breaker accounting, the pooled mTLS connection.
///
/// `target` is the service the app called: its route, deadline and retries (with its
/// budget) apply. `backend` is the service that serves the request (the same one unless
/// traffic is shifted): its bulkhead, balancer, breakers and connections.
pub(crate) fn stack<'a>(
    target: &'a Target,
    backend: &'a Target,
) -> impl Service<AppRequest, Response = Response<Held<Incoming>>, Error = RouteError<'a>, Future: Send>
+ Send
+ 'a {
    ServiceBuilder::new()
        .layer(route::Route::layer(target))
        .service(resilient(target, backend, endpoint::Connection))
}

/// Everything below the route, over `connection` (the pooled mTLS connection in
/// production, a scripted one in tests): deadline, retries, bulkhead, balancer, per-try
/// timeout and breaker accounting.
fn resilient<'a, C, B>(
    target: &'a Target,
    backend: &'a Target,
    connection: C,
) -> impl Service<Routed<'a>, Response = Response<Held<B>>, Error = ProxyError, Future: Send>
+ Clone
+ Send
+ 'a
where
    C: Service<Picked<'a>, Response = Response<B>, Error = TryError, Future: Send>
        + Clone
        + Send
        + 'a,
    B: Body<Data = Bytes> + Unpin + Send + 'a,
    B::Error: Send,
{
    ServiceBuilder::new()
        .layer(deadline::Deadline::layer())
        .layer(retry::Retry::layer(target))
        .layer(bulkhead::Bulkhead::layer(backend))
        .layer(balance::Balance::layer(backend))
        .layer(per_try_timeout::PerTryTimeout::layer())
        .layer(outcome::RecordOutcome::layer())
        .service(connection)
}

#[cfg(test)]
pub(super) mod tests;
