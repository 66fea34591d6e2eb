//! Routing of the HTTPS API (`--listen`).

use http::{Method, Request, Response};
use hyper::body::Incoming;

use super::api_error::ApiFailure;
use super::body::RespBody;
use super::{ConnInfo, Shared, admission, certificates, register, stats_ingest, watch};

pub(crate) async fn route(
    shared: &Shared,
    conn: &ConnInfo,
    req: Request<Incoming>,
) -> Response<RespBody> {
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/v1/certificates") => certificates::handle(shared, conn, req).await,
        (_, "/v1/certificates") => ApiFailure::MethodNotAllowed("POST").into_response(),
        (&Method::GET, "/v1/watch") => watch::handle(shared, conn, req.uri().query()),
        (_, "/v1/watch") => ApiFailure::MethodNotAllowed("GET").into_response(),
        (&Method::POST, "/v1/register") => register::handle(shared, conn, req).await,
        (_, "/v1/register") => ApiFailure::MethodNotAllowed("POST").into_response(),
        (&Method::POST, "/v1/stats") => stats_ingest::handle(shared, conn, req).await,
        (_, "/v1/stats") => ApiFailure::MethodNotAllowed("POST").into_response(),
        (&Method::POST, "/v1/admission") => admission::handle(shared, conn, req).await,
        (_, "/v1/admission") => ApiFailure::MethodNotAllowed("POST").into_response(),
        _ => ApiFailure::NotFound.into_response(),
    }
}
