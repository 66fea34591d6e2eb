//! The responses the proxy makes itself, instead of the upstream's. This is the one place
//! that turns a failure into a status code: every such response carries
//! `outrigger-error: <code>` and a small JSON body, so a person can tell a mesh failure
//! from an app failure. A gRPC caller gets the same failure in gRPC's own terms: a
//! trailers-only response with `grpc-status` and `grpc-message` (docs/grpc.md).

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

    /// The gRPC status a gRPC caller gets for this failure.
    pub fn grpc_status(self) -> GrpcStatus {
        match self {
            ErrorCode::UnknownService
            | ErrorCode::NoEndpoints
            | ErrorCode::CircuitOpen
            | ErrorCode::ConnectFailed
            | ErrorCode::UpstreamReset
            | ErrorCode::TlsFailed => GrpcStatus::Unavailable,
            ErrorCode::Timeout => GrpcStatus::DeadlineExceeded,
            ErrorCode::Unauthorized => GrpcStatus::PermissionDenied,
            ErrorCode::RateLimited | ErrorCode::BulkheadFull => GrpcStatus::ResourceExhausted,
            // gRPC's own mapping of an HTTP 400: the request could not be understood.
            ErrorCode::BadRequest => GrpcStatus::Internal,
        }
    }
}

/// The gRPC status codes the mesh itself answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrpcStatus {
    DeadlineExceeded = 4,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    Internal = 13,
    Unavailable = 14,
}

/// Whether a request is gRPC (`content-type: application/grpc`, `application/grpc+proto`,
/// ...): its failures are then answered in gRPC.
pub(crate) fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.strip_prefix("application/grpc")
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['+', ';']))
        })
}

/// What a response the proxy made says about its failure: read by
/// [`for_caller`] to say it again in gRPC.
#[derive(Clone, Debug)]
struct MeshFailure {
    code: ErrorCode,
    message: String,
}

/// The response for a caller: to a gRPC caller (`grpc`), a failure the proxy made
/// becomes a trailers-only gRPC response (HTTP 200, `grpc-status`, `grpc-message`, and
/// `outrigger-error` still); anything else passes unchanged.
pub(crate) fn for_caller(grpc: bool, response: Response<ProxyBody>) -> Response<ProxyBody> {
    if !grpc {
        return response;
    }
    let Some(failure) = response.extensions().get::<MeshFailure>().cloned() else {
        return response;
    };
    let mut grpc = Response::new(full(Bytes::new()));
    let headers = grpc.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(
        "grpc-status",
        HeaderValue::from(failure.code.grpc_status() as u16),
    );
    if let Ok(message) = HeaderValue::from_str(&percent_encode(&failure.message)) {
        headers.insert("grpc-message", message);
    }
    headers.insert(
        ERROR_HEADER,
        HeaderValue::from_static(failure.code.as_str()),
    );
    if let Some(retry_after) = response.headers().get(http::header::RETRY_AFTER) {
        headers.insert(http::header::RETRY_AFTER, retry_after.clone());
    }
    grpc
}

/// `grpc-message` is percent-encoded (the gRPC HTTP/2 protocol): everything outside
/// printable ASCII, and `%` itself.
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
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
            "message": &self.message,
            "service": service,
        });
        let mut response = Response::new(full(Bytes::from(body.to_string())));
        *response.status_mut() = self.code.status();
        response.extensions_mut().insert(MeshFailure {
            code: self.code,
            message: self.message,
        });
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
    fn a_grpc_caller_gets_the_failure_as_a_trailers_only_response() {
        let mut error = ProxyError::new(ErrorCode::RateLimited, "slow down: 100% busy");
        error.retry_after = Some(std::time::Duration::from_millis(1500));
        let response = for_caller(true, error.into_response("payments"));
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(headers["grpc-status"], "8", "RESOURCE_EXHAUSTED");
        assert_eq!(headers["grpc-message"], "slow down: 100%25 busy");
        assert_eq!(headers[ERROR_HEADER], "rate-limited");
        assert_eq!(headers[CONTENT_TYPE], "application/grpc");
        assert_eq!(headers[http::header::RETRY_AFTER], "2");
        // A failure to a caller that is not gRPC keeps its JSON form.
        let plain = for_caller(
            false,
            ProxyError::new(ErrorCode::Timeout, "t").into_response("p"),
        );
        assert_eq!(plain.status(), StatusCode::GATEWAY_TIMEOUT);
        // The app's own answers are left alone.
        let app = Response::new(full("hello"));
        assert!(for_caller(true, app).headers().get("grpc-status").is_none());
    }

    #[test]
    fn grpc_requests_are_told_by_their_content_type() {
        let headers = |value: &'static str| {
            let mut h = http::HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_static(value));
            h
        };
        for grpc in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc;x=y",
        ] {
            assert!(is_grpc(&headers(grpc)), "{grpc}");
        }
        for other in ["application/grpc-web", "application/json", "text/plain"] {
            assert!(!is_grpc(&headers(other)), "{other}");
        }
        assert!(!is_grpc(&http::HeaderMap::new()));
    }

    #[test]
    fn each_code_has_the_grpc_status_of_docs_grpc_md() {
        use GrpcStatus::*;
        let expected = [
            (ErrorCode::UnknownService, Unavailable),
            (ErrorCode::NoEndpoints, Unavailable),
            (ErrorCode::CircuitOpen, Unavailable),
            (ErrorCode::ConnectFailed, Unavailable),
            (ErrorCode::UpstreamReset, Unavailable),
            (ErrorCode::TlsFailed, Unavailable),
            (ErrorCode::Timeout, DeadlineExceeded),
            (ErrorCode::Unauthorized, PermissionDenied),
            (ErrorCode::RateLimited, ResourceExhausted),
            (ErrorCode::BulkheadFull, ResourceExhausted),
            (ErrorCode::BadRequest, Internal),
        ];
        assert_eq!(expected.len(), ErrorCode::ALL.len());
        for (code, status) in expected {
            assert_eq!(code.grpc_status(), status, "{code:?}");
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
