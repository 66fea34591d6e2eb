//! Which failures are worth another try, as `retryOn` names them (the vocabulary is
//! `outrigger_api::RetryCondition`), and which requests may be tried again at all.

use std::time::Duration;

use http::{HeaderMap, Method, StatusCode};
use outrigger_api::RetryCondition;

/// How one try ended, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TryOutcome {
    Status(StatusCode),
    /// The connection could not be made (the request never left).
    ConnectFailure,
    /// The connection or stream broke after the request was sent.
    Reset,
    /// The peer refused the stream before processing it (HTTP/2 REFUSED_STREAM).
    RefusedStream,
    /// The per-try timeout passed.
    Timeout,
}

/// Whether `condition` asks for another try after `outcome`.
fn matches(condition: RetryCondition, outcome: TryOutcome) -> bool {
    use RetryCondition as C;
    use TryOutcome as O;
    match (condition, outcome) {
        (C::ConnectFailure, O::ConnectFailure) => true,
        (C::Reset, O::Reset) => true,
        (C::RefusedStream, O::RefusedStream) => true,
        (C::GatewayError, O::Status(s)) => matches!(s.as_u16(), 502..=504),
        (C::GatewayError | C::ServerError, O::Timeout) => true,
        (C::ServerError, O::Status(s)) => s.is_server_error(),
        (C::Retriable4xx, O::Status(s)) => s == StatusCode::CONFLICT,
        (C::Status(code), O::Status(s)) => s.as_u16() == code,
        _ => false,
    }
}

/// A `retryOn` list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RetryOn(Vec<RetryCondition>);

impl RetryOn {
    pub(crate) fn new(conditions: &[RetryCondition]) -> RetryOn {
        RetryOn(conditions.to_vec())
    }

    /// DESIGN.md's default: connect failures, refused streams and resets.
    pub(crate) fn default_conditions() -> RetryOn {
        RetryOn(vec![
            RetryCondition::ConnectFailure,
            RetryCondition::RefusedStream,
            RetryCondition::Reset,
        ])
    }

    pub(crate) fn retries(&self, outcome: TryOutcome) -> bool {
        self.0.iter().any(|c| matches(*c, outcome))
    }
}
/// Methods that may be sent twice without changing the outcome (RFC 9110 §9.2.2).
pub(crate) fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// A `Retry-After` in seconds (the HTTP-date form is not honoured: it needs a clock
/// agreement the mesh cannot assume).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_match_outcomes() {
        let on = RetryOn::new(&[RetryCondition::GatewayError, RetryCondition::Status(409)]);
        assert!(on.retries(TryOutcome::Status(StatusCode::BAD_GATEWAY)));
        assert!(on.retries(TryOutcome::Status(StatusCode::GATEWAY_TIMEOUT)));
        assert!(on.retries(TryOutcome::Timeout));
        assert!(!on.retries(TryOutcome::Status(StatusCode::INTERNAL_SERVER_ERROR)));
        assert!(on.retries(TryOutcome::Status(StatusCode::CONFLICT)));
        assert!(!on.retries(TryOutcome::ConnectFailure));

        let on = RetryOn::new(&[RetryCondition::ServerError, RetryCondition::Retriable4xx]);
        assert!(on.retries(TryOutcome::Status(StatusCode::INTERNAL_SERVER_ERROR)));
        assert!(on.retries(TryOutcome::Status(StatusCode::CONFLICT)));
        assert!(!on.retries(TryOutcome::Status(StatusCode::NOT_FOUND)));

        let default = RetryOn::default_conditions();
        assert!(default.retries(TryOutcome::ConnectFailure));
        assert!(default.retries(TryOutcome::Reset));
        assert!(!default.retries(TryOutcome::Status(StatusCode::SERVICE_UNAVAILABLE)));
    }

    #[test]
    fn idempotent_methods_and_retry_after() {
        assert!(idempotent(&Method::GET) && idempotent(&Method::PUT));
        assert!(!idempotent(&Method::POST) && !idempotent(&Method::PATCH));
        let mut headers = HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(
            http::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }
}
