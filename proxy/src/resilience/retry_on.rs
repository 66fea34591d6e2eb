//! Which failures are worth another try, as `retryOn` names them (the vocabulary is
//! `outrigger_api::RetryCondition`), and which requests may be tried again at all.

use std::time::Duration;

use http::{HeaderMap, Method, StatusCode};
use outrigger_api::RetryCondition;

use crate::error::ErrorCode;

/// How one try ended, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TryOutcome {
    Status(StatusCode),
    /// A gRPC response that ended in its headers (trailers-only), with this
    /// `grpc-status`; read before any of it reaches the caller.
    Grpc(u16),
    /// The connection could not be made (the request never left).
    ConnectFailure,
    /// The connection or stream broke after the request was sent.
    Reset,
    /// The peer sidecar answered 502 `connect-failed`: it could not connect to its app,
    /// so the request reached no app, as after a connect failure of our own.
    PeerConnectFailure,
    /// The peer sidecar answered 502 `upstream-reset`: its app's connection broke after
    /// the request was sent, as in a reset of our own.
    PeerReset,
    /// The peer refused the stream before processing it (HTTP/2 REFUSED_STREAM).
    RefusedStream,
    /// The per-try timeout passed.
    Timeout,
}

impl TryOutcome {
    /// How a response ended: a trailers-only gRPC response by its `grpc-status`,
    /// anything else by its HTTP status.
    pub(crate) fn of_response<B>(response: &http::Response<B>) -> TryOutcome {
        let grpc = response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u16>().ok());
        match grpc {
            Some(code) if response.status() == StatusCode::OK => TryOutcome::Grpc(code),
            _ => peer_failure(response).unwrap_or(TryOutcome::Status(response.status())),
        }
    }

    /// The HTTP status the try ended with, if it got an answer.
    fn status(self) -> Option<StatusCode> {
        match self {
            TryOutcome::Status(status) => Some(status),
            TryOutcome::PeerConnectFailure | TryOutcome::PeerReset => Some(StatusCode::BAD_GATEWAY),
            _ => None,
        }
    }
}

/// What a 502 made by the peer sidecar says about the hop to its app. The peer names its
/// failure in `outrigger-error`; an app's own 502 has no such header and stays a status.
fn peer_failure<B>(response: &http::Response<B>) -> Option<TryOutcome> {
    if response.status() != StatusCode::BAD_GATEWAY {
        return None;
    }
    let code = response
        .headers()
        .get(crate::error::ERROR_HEADER)?
        .as_bytes();
    if code == ErrorCode::ConnectFailed.as_str().as_bytes() {
        Some(TryOutcome::PeerConnectFailure)
    } else if code == ErrorCode::UpstreamReset.as_str().as_bytes() {
        Some(TryOutcome::PeerReset)
    } else {
        None
    }
}

/// Whether `condition` asks for another try after `outcome`.
fn matches(condition: RetryCondition, outcome: TryOutcome) -> bool {
    use RetryCondition as C;
    use TryOutcome as O;
    // The peer's failures are 502s to the status conditions, and to the transport ones
    // what the same failure would be on our own connection.
    let status = outcome.status();
    match (condition, outcome) {
        (C::ConnectFailure, O::ConnectFailure | O::PeerConnectFailure) => true,
        (C::Reset, O::Reset | O::PeerReset) => true,
        (C::RefusedStream, O::RefusedStream) => true,
        (C::GatewayError | C::ServerError, O::Timeout) => true,
        (C::GatewayError, _) => status.is_some_and(|s| matches!(s.as_u16(), 502..=504)),
        (C::ServerError, _) => status.is_some_and(|s| s.is_server_error()),
        (C::Retriable4xx, _) => status == Some(StatusCode::CONFLICT),
        (C::Status(code), _) => status.is_some_and(|s| s.as_u16() == code),
        (grpc, O::Grpc(status)) => grpc.grpc_status() == Some(status),
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

    /// DESIGN.md's default: connect failures, refused streams and resets; for a
    /// `protocol: grpc` service, `unavailable` too.
    pub(crate) fn default_conditions(grpc: bool) -> RetryOn {
        let mut conditions = vec![
            RetryCondition::ConnectFailure,
            RetryCondition::RefusedStream,
            RetryCondition::Reset,
        ];
        if grpc {
            conditions.push(RetryCondition::GrpcUnavailable);
        }
        RetryOn(conditions)
    }

    /// Whether any condition reads a `grpc-status` (so a gRPC answer's trailers matter).
    pub(crate) fn reads_grpc(&self) -> bool {
        self.0.iter().any(|c| c.grpc_status().is_some())
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
    fn grpc_conditions_read_the_grpc_status_of_a_trailers_only_response() {
        let on = RetryOn::new(&[
            RetryCondition::GrpcUnavailable,
            RetryCondition::GrpcCancelled,
        ]);
        let response = |status: u16, grpc: Option<&'static str>| {
            let mut r = http::Response::new(());
            *r.status_mut() = StatusCode::from_u16(status).unwrap();
            if let Some(grpc) = grpc {
                r.headers_mut()
                    .insert("grpc-status", http::HeaderValue::from_static(grpc));
            }
            TryOutcome::of_response(&r)
        };
        assert_eq!(response(200, Some("14")), TryOutcome::Grpc(14));
        assert!(on.retries(response(200, Some("14"))));
        assert!(on.retries(response(200, Some("1"))));
        assert!(!on.retries(response(200, Some("13"))));
        assert!(!on.retries(response(200, Some("0"))), "OK is never retried");
        assert!(
            !on.retries(response(200, None)),
            "headers only: the status is in the trailers"
        );
        assert_eq!(
            response(503, Some("14")),
            TryOutcome::Status(StatusCode::SERVICE_UNAVAILABLE)
        );
        // gRPC conditions do not match HTTP statuses, and HTTP ones not gRPC statuses.
        assert!(!on.retries(TryOutcome::Status(StatusCode::SERVICE_UNAVAILABLE)));
        let http = RetryOn::new(&[RetryCondition::ServerError]);
        assert!(!http.retries(TryOutcome::Grpc(14)));
    }

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

        let grpc = RetryOn::default_conditions(true);
        assert!(
            grpc.retries(TryOutcome::Grpc(14)),
            "UNAVAILABLE, for grpc services"
        );
        assert!(!grpc.retries(TryOutcome::Grpc(13)));
        assert!(!grpc.retries(TryOutcome::Grpc(0)));
        let default = RetryOn::default_conditions(false);
        assert!(!default.retries(TryOutcome::Grpc(14)));
        assert!(default.retries(TryOutcome::ConnectFailure));
        assert!(default.retries(TryOutcome::Reset));
        assert!(!default.retries(TryOutcome::Status(StatusCode::SERVICE_UNAVAILABLE)));
    }

    #[test]
    fn a_peer_that_could_not_reach_its_app_is_a_connect_failure_or_a_reset() {
        let response = |status: u16, error: Option<&'static str>| {
            let mut r = http::Response::new(());
            *r.status_mut() = StatusCode::from_u16(status).unwrap();
            if let Some(error) = error {
                r.headers_mut().insert(
                    crate::error::ERROR_HEADER,
                    http::HeaderValue::from_static(error),
                );
            }
            TryOutcome::of_response(&r)
        };
        let refused = response(502, Some("connect-failed"));
        let reset = response(502, Some("upstream-reset"));
        assert_eq!(refused, TryOutcome::PeerConnectFailure);
        assert_eq!(reset, TryOutcome::PeerReset);
        // An app's own 502, and the peer's other answers, stay statuses.
        assert_eq!(
            response(502, None),
            TryOutcome::Status(StatusCode::BAD_GATEWAY)
        );
        assert_eq!(
            response(503, Some("connect-failed")),
            TryOutcome::Status(StatusCode::SERVICE_UNAVAILABLE)
        );
        assert_eq!(
            response(502, Some("tls-failed")),
            TryOutcome::Status(StatusCode::BAD_GATEWAY)
        );

        let default = RetryOn::default_conditions(false);
        assert!(default.retries(refused) && default.retries(reset));
        assert!(!default.retries(TryOutcome::Status(StatusCode::BAD_GATEWAY)));
        // To the status conditions they are the 502s they are.
        for statuses in [
            vec![RetryCondition::GatewayError],
            vec![RetryCondition::ServerError],
            vec![RetryCondition::Status(502)],
        ] {
            let on = RetryOn::new(&statuses);
            assert!(on.retries(refused) && on.retries(reset), "{statuses:?}");
        }
        let only_resets = RetryOn::new(&[RetryCondition::Reset]);
        assert!(only_resets.retries(reset) && !only_resets.retries(refused));
        assert!(!RetryOn::new(&[RetryCondition::Status(503)]).retries(refused));
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
