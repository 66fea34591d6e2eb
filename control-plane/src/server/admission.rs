//! `POST /v1/admission`: the mutating webhook the API server calls (TLS, no client
//! certificate). The decisions are [`crate::inject::admission`]'s; this is HTTP only.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tracing::warn;

use super::api_error::ApiFailure;
use super::body::{RespBody, json};
use super::certificates::read_body_up_to;
use super::{ConnInfo, Shared};
use crate::inject::admission;

/// A pod object is at most about 1.5 MiB in etcd; its review with old and new objects
/// stays under this.
const MAX_REVIEW: usize = 4 * 1024 * 1024;

pub(crate) async fn handle(
    shared: &Shared,
    conn: &ConnInfo,
    req: Request<Incoming>,
) -> Response<RespBody> {
    let body = match read_body_up_to(req.into_body(), MAX_REVIEW).await {
        Ok(body) => body,
        Err(failure) => return failure.into_response(),
    };
    match admission::review(&body, &shared.inject) {
        Ok(answer) => json(StatusCode::OK, &answer),
        Err(message) => {
            warn!(peer = %conn.peer, "refused admission review: {message}");
            ApiFailure::BadRequest(message).into_response()
        }
    }
}
