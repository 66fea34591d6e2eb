//! Calling a service with its policy, in DESIGN.md's order: the whole-request deadline
//! (the route's timeout, or the time budget the request arrived with, whichever is
//! sooner) around retries with a budget, each try passing the bulkhead, the balancer
//! (which skips endpoints whose breaker is open and prefers another endpoint for a
//! retry), a per-try timeout, and breaker accounting, down to the pooled connection.

use std::net::SocketAddr;
use std::time::Duration;

use http::request::Parts;
use http::uri::Authority;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use tokio::time::Instant;

use super::request::{copy_head, prepare};
use crate::backoff::Backoff;
use crate::balance::Balanced;
use crate::discovery::{Pick, Target};
use crate::error::{ErrorCode, ProxyError};
use crate::resilience::counters::ResilienceCounters;
use crate::resilience::deadline;
use crate::resilience::policy::RoutePolicy;
use crate::resilience::replay::OutboundBody;
use crate::resilience::retry_on::{TryOutcome, idempotent, retry_after};

/// Marks a retried request (1 for the first retry); a sidecar seeing it does not retry
/// the request again, so retries never multiply across hops.
pub const RETRY_ATTEMPT_HEADER: &str = "outrigger-retry-attempt";

/// Sends `req` to `target` under the route's policy.
pub async fn call(
    target: &Target,
    route: &RoutePolicy,
    req: Request<Incoming>,
    authority: Authority,
) -> Result<Response<Incoming>, ProxyError> {
    let (mut parts, body) = req.into_parts();
    let limit = match (
        route.request_timeout,
        deadline::incoming_budget(&parts.headers),
    ) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let deadline = limit.map(|limit| Instant::now() + limit);
    // A request that is already a retry upstream is tried once here.
    let may_retry = route.retry.attempts > 0
        && (route.retry.non_idempotent || idempotent(&parts.method))
        && !parts.headers.contains_key(RETRY_ATTEMPT_HEADER);
    prepare(&mut parts, authority)?;
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
    if let Ok(mut budget) = target.budget.lock() {
        budget.record_request(Instant::now());
    }
    let tries = tries(target, route, parts, body, may_retry, deadline);
    match (deadline, limit) {
        (Some(deadline), Some(limit)) => tokio::time::timeout_at(deadline, tries)
            .await
            .unwrap_or_else(|_| {
                Err(ProxyError::new(
                    ErrorCode::Timeout,
                    format!("no response within {} ms", limit.as_millis()),
                ))
            }),
        _ => tries.await,
    }
}

async fn tries(
    target: &Target,
    route: &RoutePolicy,
    parts: Parts,
    body: OutboundBody,
    may_retry: bool,
    deadline: Option<Instant>,
) -> Result<Response<Incoming>, ProxyError> {
    let counters = &target.metrics.resilience;
    let mut backoff = Backoff::new(route.retry.backoff_base, route.retry.backoff_max);
    let mut previous: Option<SocketAddr> = None;
    let mut body = Some(body);
    let mut attempt: u32 = 0;
    loop {
        // A body that cannot be replayed goes with this try and rules out the next.
        let this_body = match body.as_ref().and_then(OutboundBody::try_clone) {
            Some(copy) => copy,
            None => body.take().unwrap_or(OutboundBody::Buffered(None)),
        };
        let replayable = body.is_some();
        let mut request = copy_head(&parts).map(|()| this_body);
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
        let (result, outcome) =
            try_once(target, route.retry.per_try_timeout, request, &mut previous).await;
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
    }
}

/// One try: bulkhead, balancer, per-try timeout, breaker accounting, connection. Also
/// says how the try ended for `retryOn` (`None`: no retry can mend it, such as a full
/// bulkhead or open circuits).
async fn try_once(
    target: &Target,
    per_try_timeout: Option<Duration>,
    request: Request<OutboundBody>,
    previous: &mut Option<SocketAddr>,
) -> (Result<Response<Incoming>, ProxyError>, Option<TryOutcome>) {
    let admission = target.bulkhead.admit().await.map_err(|rejected| {
        ResilienceCounters::inc(&target.metrics.resilience.bulkhead_rejected);
        ProxyError::new(
            ErrorCode::BulkheadFull,
            format!(
                "bulkhead full for {}: {rejected:?}",
                target.metrics.service()
            ),
        )
    });
    let _admission = match admission {
        Ok(admission) => admission,
        Err(error) => return (Err(error), None),
    };
    let now = std::time::Instant::now();
    let endpoint = match target.pick(now, *previous) {
        Pick::Endpoint(endpoint) => endpoint,
        Pick::NoEndpoints => {
            let error = ProxyError::new(ErrorCode::NoEndpoints, "the service has no endpoints");
            return (Err(error), None);
        }
        Pick::AllOpen => {
            let error = ProxyError::new(
                ErrorCode::CircuitOpen,
                "every endpoint's circuit breaker is open",
            );
            return (Err(error), None);
        }
    };
    *previous = Some(endpoint.addr());
    // The balancer's view: in flight from the pick; latency from the send on a ready
    // connection to the response headers.
    let mut in_flight = endpoint.load().start(now);
    let send = async {
        let mut sender = endpoint
            .sender()
            .await
            .map_err(|e| (e, TryOutcome::ConnectFailure))?;
        in_flight.dispatched(std::time::Instant::now());
        sender
            .send_request(request)
            .await
            .map_err(|e| send_error(endpoint.addr(), &e))
    };
    let sent = match per_try_timeout {
        Some(limit) => tokio::time::timeout(limit, send).await.unwrap_or_else(|_| {
            let error = ProxyError::new(
                ErrorCode::Timeout,
                format!(
                    "{}: no response within the per-try timeout of {} ms",
                    endpoint.addr(),
                    limit.as_millis()
                ),
            );
            Err((error, TryOutcome::Timeout))
        }),
        None => send.await,
    };
    in_flight.finish(sent.is_ok(), std::time::Instant::now());
    // Off the request path: the breaker task does the counting.
    let healthy = matches!(&sent, Ok(response) if !response.status().is_server_error());
    endpoint.circuit().record(healthy);
    match sent {
        Ok(response) => {
            let outcome = TryOutcome::Status(response.status());
            (Ok(response), Some(outcome))
        }
        Err((error, outcome)) => (Err(error), Some(outcome)),
    }
}

/// A failed send: a reset, or a refused stream (the peer did not process the request).
fn send_error(addr: SocketAddr, error: &hyper::Error) -> (ProxyError, TryOutcome) {
    let refused = std::error::Error::source(error)
        .and_then(|e| e.downcast_ref::<h2::Error>())
        .and_then(h2::Error::reason)
        == Some(h2::Reason::REFUSED_STREAM);
    let outcome = if refused {
        TryOutcome::RefusedStream
    } else {
        TryOutcome::Reset
    };
    let error = ProxyError::new(ErrorCode::UpstreamReset, format!("{addr}: {error}"));
    (error, outcome)
}
