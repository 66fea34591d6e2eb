//! Which failures are worth another try, as `retryOn` names them, and which requests may
//! be tried again at all.

use std::time::Duration;

use http::{HeaderMap, Method, StatusCode};

/// How one try ended, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TryOutcome {
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    ConnectFailure,
    Reset,
    RefusedStream,
    /// 502, 503, 504 (and a per-try timeout, which the caller sees as 504).
    GatewayError,
    /// Any 5xx (and a per-try timeout).
    ServerError,
    /// 409 Conflict: the request can be expected to succeed as is later.
    Retriable4xx,
    Status(u16),
}

impl Condition {
    pub fn parse(text: &str) -> Option<Condition> {
        Some(match text {
            "connect-failure" => Condition::ConnectFailure,
            "reset" => Condition::Reset,
            "refused-stream" => Condition::RefusedStream,
            "gateway-error" => Condition::GatewayError,
            "5xx" => Condition::ServerError,
            "retriable-4xx" => Condition::Retriable4xx,
            code if code.len() == 3 => {
                let status: u16 = code.parse().ok()?;
                (100..=599)
                    .contains(&status)
                    .then_some(Condition::Status(status))?
            }
            _ => return None,
        })
    }

    fn matches(self, outcome: TryOutcome) -> bool {
        use TryOutcome as O;
        match (self, outcome) {
            (Condition::ConnectFailure, O::ConnectFailure) => true,
            (Condition::Reset, O::Reset) => true,
            (Condition::RefusedStream, O::RefusedStream) => true,
            (Condition::GatewayError, O::Status(s)) => matches!(s.as_u16(), 502..=504),
            (Condition::GatewayError | Condition::ServerError, O::Timeout) => true,
            (Condition::ServerError, O::Status(s)) => s.is_server_error(),
            (Condition::Retriable4xx, O::Status(s)) => s == StatusCode::CONFLICT,
            (Condition::Status(code), O::Status(s)) => s.as_u16() == code,
            _ => false,
        }
    }
}

/// A parsed `retryOn` list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryOn(Vec<Condition>);

impl RetryOn {
    /// Unknown names are skipped (the control plane has refused them already).
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> RetryOn {
        RetryOn(names.into_iter().filter_map(Condition::parse).collect())
    }

    /// DESIGN.md's default: connect failures, refused streams and resets.
    pub fn default_conditions() -> RetryOn {
        RetryOn(vec![
            Condition::ConnectFailure,
            Condition::RefusedStream,
            Condition::Reset,
        ])
    }

    pub fn retries(&self, outcome: TryOutcome) -> bool {
        self.0.iter().any(|c| c.matches(outcome))
    }
}

/// Methods that may be sent twice without changing the outcome (RFC 9110 §9.2.2).
pub fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// A `Retry-After` in seconds (the HTTP-date form is not honoured: it needs a clock
/// agreement the mesh cannot assume).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_match_outcomes() {
        let on = RetryOn::parse(["gateway-error", "409", "nonsense"]);
        assert!(on.retries(TryOutcome::Status(StatusCode::BAD_GATEWAY)));
        assert!(on.retries(TryOutcome::Status(StatusCode::GATEWAY_TIMEOUT)));
        assert!(on.retries(TryOutcome::Timeout));
        assert!(!on.retries(TryOutcome::Status(StatusCode::INTERNAL_SERVER_ERROR)));
        assert!(on.retries(TryOutcome::Status(StatusCode::CONFLICT)));
        assert!(!on.retries(TryOutcome::ConnectFailure));

        let on = RetryOn::parse(["5xx", "retriable-4xx"]);
        assert!(on.retries(TryOutcome::Status(StatusCode::INTERNAL_SERVER_ERROR)));
        assert!(on.retries(TryOutcome::Status(StatusCode::CONFLICT)));
        assert!(!on.retries(TryOutcome::Status(StatusCode::NOT_FOUND)));

        let default = RetryOn::default_conditions();
        assert!(default.retries(TryOutcome::ConnectFailure));
        assert!(default.retries(TryOutcome::Reset));
        assert!(!default.retries(TryOutcome::Status(StatusCode::SERVICE_UNAVAILABLE)));
    }

    #[test]
    fn parses_status_codes_only_in_range() {
        assert_eq!(Condition::parse("503"), Some(Condition::Status(503)));
        assert_eq!(Condition::parse("999"), None);
        assert_eq!(Condition::parse("50"), None);
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
