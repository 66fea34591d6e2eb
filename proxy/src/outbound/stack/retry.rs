//! Retries with a budget. Each request counts toward the service's retry budget; a try
//! whose outcome the route's `retryOn` names is tried again, after an exponential backoff
//! with full jitter (at least a 503's `Retry-After`), when the budget grants it, the body
//! can be sent again, and the deadline leaves time. A retried request is marked so that
//! sidecars further on do not retry it again.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderValue, Response};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

use super::{Routed, Try, TryError};
use crate::backoff::Backoff;
use crate::error::ProxyError;
use crate::outbound::Target;
use crate::outbound::request::copy_head;
use crate::resilience::counters::ResilienceCounters;
use crate::resilience::deadline;
use crate::resilience::replay::OutboundBody;
use crate::resilience::retry_on::{TryOutcome, retry_after};
use crate::trace::RetryCount;

/// Marks a retried request (1 for the first retry); a sidecar seeing it does not retry
/// the request again, so retries never multiply across hops.
pub(crate) const RETRY_ATTEMPT_HEADER: &str = "outrigger-retry-attempt";

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
    B: Send + 'a,
{
    type Response = Response<B>;
    type Error = ProxyError;
    /// Boxed: the loop of tries and backoff sleeps is an `async` block.
    type Future = Pin<Box<dyn Future<Output = Result<Response<B>, ProxyError>> + Send + 'a>>;

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
) -> Result<Response<B>, ProxyError>
where
    S: Service<Try, Response = Response<B>, Error = TryError>,
{
    let Routed {
        head,
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
        let mut request = copy_head(&head).map(|()| this_body);
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
            Ok(response) => {
                let outcome = TryOutcome::of_response(&response);
                (Ok(response), Some(outcome))
            }
            Err(TryError { error, outcome }) => (Err(error), outcome),
        };
        let wanted = may_retry
            && replayable
            && attempt < route.retry.attempts
            && outcome.is_some_and(|o| route.retry.retry_on.retries(o));
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
            && response.status() == http::StatusCode::SERVICE_UNAVAILABLE
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
