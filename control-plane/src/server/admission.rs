//! `POST /v1/admission`: the mutating webhook the API server calls (TLS, no client
//! certificate). The decisions are [`crate::inject::admission`]'s; this is HTTP only.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::api_error::ApiFailure;
use super::body::{RespBody, json};
use super::refusal::refused;
use super::request_body::read_body_up_to;
use super::{ConnInfo, Shared};
use crate::inject::admission;
use crate::metrics::Endpoint;

/// A pod object is at most about 1.5 MiB in etcd; its review with old and new objects
/// stays under this.
const MAX_REVIEW: usize = 4 * 1024 * 1024;

pub(crate) async fn handle(
    shared: &Shared,
    conn: &ConnInfo,
    req: Request<Incoming>,
) -> Response<RespBody> {
    let reviewed = match read_body_up_to(req.into_body(), MAX_REVIEW).await {
        Ok(body) => admission::review(&body, &shared.inject).map_err(ApiFailure::BadRequest),
        Err(failure) => Err(failure),
    };
    match reviewed {
        Ok(answer) => json(StatusCode::OK, &answer),
        Err(failure) => {
            refused(shared, conn, Endpoint::Admission, &failure);
            failure.into_response()
        }
    }
}
