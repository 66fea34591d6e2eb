//! Retries with a budget. Each request counts toward the service's retry budget; a try
//! whose outcome the route's `retryOn` names is tried again, after an exponential backoff
//! with full jitter (at least a 503's `Retry-After`), when the budget grants it, the body
//! can be sent again, and the deadline leaves time. A retried request is marked so that
//! sidecars further on do not retry it again.
//!
//! A gRPC answer keeps its status in trailers, after its messages. When the route
//! retries on a gRPC status and the request may still be retried, a gRPC answer whose
//! head carries no status is read ahead (`body/held.rs`): up to the retry buffer's size
//! and for at most [`GRPC_HOLD`], so that its trailers can still ask for another try
//! before any of it reaches the caller.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body::Body;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

use super::{Routed, Try, TryError};
use crate::backoff::Backoff;
use crate::body::held::{Held, ReadAhead, read_ahead};
use crate::error::ProxyError;
use crate::outbound::Target;
use crate::outbound::request::{copy_head, take_head};
use crate::resilience::counters::ResilienceCounters;
use crate::resilience::deadline;
use crate::resilience::policy::MAX_RETRY_BODY;
use crate::resilience::replay::OutboundBody;
use crate::resilience::retry_on::{TryOutcome, retry_after};
use crate::trace::RetryCount;

/// Marks a retried request (1 for the first retry); a sidecar seeing it does not retry
/// the request again, so retries never multiply across hops.
pub(crate) const RETRY_ATTEMPT_HEADER: &str = "outrigger-retry-attempt";

/// How long a gRPC answer's body may be held for its trailers. A unary answer's
/// messages and trailers arrive together, well within it; a server stream that pauses
/// longer is passed on, and is not retried.
pub(crate) const GRPC_HOLD: std::time::Duration = std::time::Duration::from_millis(50);

#[derive(Clone)]
pub(crate) struct Retry<'a, S> {
    target: &'a Target,
    inner: S,
}

pub(crate) struct RetryLayer<'a>(&'a Target);

impl<'a> Retry<'a, ()> {
    pub(crate) fn layer(target: &'a Target) -> RetryLayer<'a> {
        RetryLayer(target)
    }
}

impl<'a, S> Layer<S> for RetryLayer<'a> {
    type Service = Retry<'a, S>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry {
            target: self.0,
            inner,
        }
    }
}

impl<'a, S, B> Service<Routed<'a>> for Retry<'a, S>
where
    S: Service<Try, Response = Response<B>, Error = TryError> + Clone + Send + 'a,
    S::Future: Send,
    B: Body<Data = Bytes> + Unpin + Send + 'a,
    B::Error: Send,
{
    type Response = Response<Held<B>>;
    type Error = ProxyError;
    /// Boxed: the loop of tries and backoff sleeps is an `async` block.
    type Future = Pin<Box<dyn Future<Output = Result<Response<Held<B>>, ProxyError>> + Send + 'a>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        // Each try readies the layers below (the bulkhead admits it there).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Routed<'a>) -> Self::Future {
        let target = self.target;
        if let Ok(mut budget) = target.budget.lock() {
            budget.record_request(Instant::now());
        }
        // One copy per request: it holds the balancer's memory of the previous endpoint.
        let inner = self.inner.clone();
        Box::pin(tries(target, inner, req))
    }
}

async fn tries<S, B>(
    target: &Target,
    mut inner: S,
    req: Routed<'_>,
) -> Result<Response<Held<B>>, ProxyError>
where
    S: Service<Try, Response = Response<B>, Error = TryError>,
    B: Body<Data = Bytes> + Unpin,
{
    let Routed {
        mut head,
        body,
        route,
        may_retry,
        deadline,
        ..
    } = req;
    let counters = &target.metrics.resilience;
    let mut backoff = Backoff::new(route.retry.backoff_base, route.retry.backoff_max);
    let mut body = Some(body);
    let mut attempt: u32 = 0;
    loop {
        // A body that cannot be replayed goes with this try and rules out the next.
        let this_body = match body.as_ref().and_then(OutboundBody::try_clone) {
            Some(copy) => copy,
            None => body.take().unwrap_or(OutboundBody::Buffered(None)),
        };
        let replayable = body.is_some();
        let may_retry_this = may_retry && replayable && attempt < route.retry.attempts;
        let head_for_try = if may_retry_this {
            copy_head(&head)
        } else {
            take_head(&mut head)
        };
        let mut request = head_for_try.map(|()| this_body);
        if attempt > 0 {
            request
                .headers_mut()
                .insert(RETRY_ATTEMPT_HEADER, HeaderValue::from(attempt));
        }
        if let Some(deadline) = deadline {
            deadline::set_budget(
                request.headers_mut(),
                deadline.saturating_duration_since(Instant::now()),
            );
        }
        let one = Try {
            request,
            per_try_timeout: route.retry.per_try_timeout,
        };
        let tried = match inner.ready().await {
            Ok(ready) => ready.call(one).await,
            Err(error) => Err(error),
        };
        let (result, outcome) = match tried {
            Ok(response) if may_retry_this && route.retry.retry_on.reads_grpc() => {
                let (response, outcome) = hold_grpc(response, deadline).await;
                (Ok(response), Some(outcome))
            }
            Ok(response) => {
                let outcome = TryOutcome::of_response(&response);
                (Ok(response.map(Held::passthrough)), Some(outcome))
            }
            Err(TryError { error, outcome }) => (Err(error), outcome),
        };
        let wanted = may_retry_this && outcome.is_some_and(|o| route.retry.retry_on.retries(o));
        if !wanted {
            return result;
        }
        let granted = target
            .budget
            .lock()
            .map(|mut budget| budget.try_retry(Instant::now()))
            .unwrap_or(false);
        if !granted {
            ResilienceCounters::inc(&counters.budget_exhausted);
            return result;
        }
        let mut delay = backoff.next_delay();
        if let Ok(response) = &result
            && response.status() == StatusCode::SERVICE_UNAVAILABLE
        {
            delay = delay.max(retry_after(response.headers()).unwrap_or_default());
        }
        if deadline.is_some_and(|d| Instant::now() + delay >= d) {
            // No time left for another try: the answer we have is the answer.
            return result;
        }
        ResilienceCounters::inc(&counters.retries);
        drop(result);
        tokio::time::sleep(delay).await;
        attempt += 1;
        // A request being traced says how often it was retried.
        if let Some(count) = head.extensions.get::<RetryCount>() {
            count.set(attempt);
        }
    }
}

/// How `response` ended, reading its body ahead when it is a gRPC answer whose status
/// is still to come (in its trailers).
async fn hold_grpc<B>(
    response: Response<B>,
    deadline: Option<Instant>,
) -> (Response<Held<B>>, TryOutcome)
where
    B: Body<Data = Bytes> + Unpin,
{
    let outcome = TryOutcome::of_response(&response);
    let awaits_trailers =
        outcome == TryOutcome::Status(StatusCode::OK) && crate::error::is_grpc(response.headers());
    if !awaits_trailers {
        return (response.map(Held::passthrough), outcome);
    }
    let mut until = Instant::now() + GRPC_HOLD;
    if let Some(deadline) = deadline {
        until = until.min(deadline);
    }
    let (head, body) = response.into_parts();
    let (held, found) = read_ahead(body, MAX_RETRY_BODY, until).await;
    let outcome = match found {
        ReadAhead::Complete {
            grpc_status: Some(code),
        } => TryOutcome::Grpc(code),
        // Nothing reached the caller: a body that broke is a reset like any other.
        ReadAhead::Failed => TryOutcome::Reset,
        ReadAhead::Complete { grpc_status: None } | ReadAhead::Released => outcome,
    };
    (Response::from_parts(head, held), outcome)
}
