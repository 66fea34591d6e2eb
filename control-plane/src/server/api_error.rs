//! The one place where API failures become HTTP statuses and `ApiError` bodies.

use http::{HeaderValue, Response, StatusCode, header};
use outrigger_api::ApiError;

use super::body::{RespBody, json};
use crate::metrics::Refusal;

/// Why an API request failed; each variant is one error code of the API.
#[derive(Debug)]
pub(crate) enum ApiFailure {
    /// Not JSON, unknown fields, unreadable body.
    BadRequest(String),
    InvalidCsr(String),
    /// No proof of identity, or a proof that does not hold (with the precise reason).
    Unauthenticated(String),
    /// Authenticated, but not allowed to do this (with the precise reason).
    Forbidden(String),
    /// The credential was issued before its identity was revoked (`crate::revocation`).
    Revoked(String),
    /// The service has as many registered instances as `--max-instances-per-service`.
    TooManyInstances(String),
    /// The identity has as many proxies known as `--max-proxies-per-identity`.
    TooManyProxies(String),
    PayloadTooLarge(usize),
    RequestTimeout,
    NotFound,
    /// The path exists; the methods it allows are given.
    MethodNotAllowed(&'static str),
    /// Our own fault; the detail is logged, not sent.
    Internal,
}

impl ApiFailure {
    fn status(&self) -> StatusCode {
        match self {
            ApiFailure::BadRequest(_) | ApiFailure::InvalidCsr(_) => StatusCode::BAD_REQUEST,
            ApiFailure::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiFailure::Forbidden(_) | ApiFailure::Revoked(_) => StatusCode::FORBIDDEN,
            ApiFailure::TooManyInstances(_) | ApiFailure::TooManyProxies(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiFailure::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiFailure::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiFailure::NotFound => StatusCode::NOT_FOUND,
            ApiFailure::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiFailure::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiFailure::NotFound => "not-found",
            ApiFailure::MethodNotAllowed(_) => "method-not-allowed",
            other => other.refusal().label(),
        }
    }

    /// The refusal counted in metrics (a 404 or 405 never reaches a handler that counts).
    pub(crate) fn refusal(&self) -> Refusal {
        match self {
            ApiFailure::BadRequest(_) => Refusal::BadRequest,
            ApiFailure::InvalidCsr(_) => Refusal::InvalidCsr,
            ApiFailure::Unauthenticated(_) => Refusal::Unauthenticated,
            ApiFailure::Forbidden(_) => Refusal::Forbidden,
            ApiFailure::Revoked(_) => Refusal::Revoked,
            ApiFailure::TooManyInstances(_) => Refusal::TooManyInstances,
            ApiFailure::TooManyProxies(_) => Refusal::TooManyProxies,
            ApiFailure::PayloadTooLarge(_) => Refusal::PayloadTooLarge,
            ApiFailure::RequestTimeout => Refusal::RequestTimeout,
            ApiFailure::NotFound | ApiFailure::MethodNotAllowed(_) => Refusal::BadRequest,
            ApiFailure::Internal => Refusal::Internal,
        }
    }

    pub(crate) fn message(&self) -> String {
        match self {
            ApiFailure::BadRequest(m)
            | ApiFailure::InvalidCsr(m)
            | ApiFailure::Unauthenticated(m)
            | ApiFailure::Forbidden(m)
            | ApiFailure::Revoked(m)
            | ApiFailure::TooManyInstances(m)
            | ApiFailure::TooManyProxies(m) => m.clone(),
            ApiFailure::PayloadTooLarge(limit) => {
                format!("request body is larger than {limit} bytes")
            }
            ApiFailure::RequestTimeout => "request body was not received in time".into(),
            ApiFailure::NotFound => "no such endpoint".into(),
            ApiFailure::MethodNotAllowed(allow) => format!("method not allowed; use {allow}"),
            ApiFailure::Internal => "internal error; see the control plane's log".into(),
        }
    }

    pub(crate) fn into_response(self) -> Response<RespBody> {
        let body = ApiError {
            error: self.code().to_string(),
            message: self.message(),
        };
        let mut response = json(self.status(), &body);
        if let ApiFailure::MethodNotAllowed(allow) = self {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        response
    }
}
