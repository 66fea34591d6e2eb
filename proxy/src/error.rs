//! The responses the proxy makes itself, instead of the upstream's. This is the one place
//! that turns a failure into a status code: every such response carries
//! `outrigger-error: <code>` and a small JSON body, so a person can tell a mesh failure
//! from an app failure.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};

use crate::body::{ProxyBody, full};

/// Header naming the mesh failure on a response the proxy made.
pub const ERROR_HEADER: &str = "outrigger-error";

/// Mesh failures, as DESIGN.md's error table names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    UnknownService,
    NoEndpoints,
    ConnectFailed,
    UpstreamReset,
    TlsFailed,
    Timeout,
    Unauthorized,
    BadRequest,
    CircuitOpen,
    BulkheadFull,
    RateLimited,
}

impl ErrorCode {
    /// Every code, for metrics that keep one counter each.
    pub const ALL: [ErrorCode; 11] = [
        ErrorCode::UnknownService,
        ErrorCode::NoEndpoints,
        ErrorCode::ConnectFailed,
        ErrorCode::UpstreamReset,
        ErrorCode::TlsFailed,
        ErrorCode::Timeout,
        ErrorCode::Unauthorized,
        ErrorCode::BadRequest,
        ErrorCode::CircuitOpen,
        ErrorCode::BulkheadFull,
        ErrorCode::RateLimited,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::UnknownService => "unknown-service",
            ErrorCode::NoEndpoints => "no-endpoints",
            ErrorCode::ConnectFailed => "connect-failed",
            ErrorCode::UpstreamReset => "upstream-reset",
            ErrorCode::TlsFailed => "tls-failed",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::BadRequest => "bad-request",
            ErrorCode::CircuitOpen => "circuit-open",
            ErrorCode::BulkheadFull => "bulkhead-full",
            ErrorCode::RateLimited => "rate-limited",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::UnknownService
            | ErrorCode::ConnectFailed
            | ErrorCode::UpstreamReset
            | ErrorCode::TlsFailed => StatusCode::BAD_GATEWAY,
            ErrorCode::NoEndpoints | ErrorCode::CircuitOpen | ErrorCode::BulkheadFull => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::Unauthorized => StatusCode::FORBIDDEN,
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
        }
    }

    /// Position in [`ErrorCode::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A failure on the way to the upstream, with what a person needs to understand it.
#[derive(Debug)]
pub(crate) struct ProxyError {
    pub code: ErrorCode,
    pub message: String,
    /// For `rate-limited`: when to come back (`retry-after`, whole seconds, rounded up).
    pub retry_after: Option<std::time::Duration>,
}

impl ProxyError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ProxyError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The response for this failure; `service` is what the caller asked for.
    pub(crate) fn into_response(self, service: &str) -> Response<ProxyBody> {
        let body = serde_json::json!({
            "error": self.code.as_str(),
            "message": self.message,
            "service": service,
        });
        let mut response = Response::new(full(Bytes::from(body.to_string())));
        *response.status_mut() = self.code.status();
        let headers = response.headers_mut();
        headers.insert(ERROR_HEADER, HeaderValue::from_static(self.code.as_str()));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(wait) = self.retry_after {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_indexed_in_order() {
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(code.index(), i);
        }
    }

    #[test]
    fn response_names_the_failure() {
        let response =
            ProxyError::new(ErrorCode::TlsFailed, "peer identity is x").into_response("payments");
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(response.headers()[ERROR_HEADER], "tls-failed");
    }
}
