//! Reading a request body whole, within a limit and a time. A body that says in its
//! `Content-Length` that it is too large is refused before one byte of it is read; a
//! chunked one is read up to the limit and no further. Either way the 413 goes out at
//! once, and hyper closes the connection rather than read the rest.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper::body::{Body as _, Incoming};

use super::api_error::ApiFailure;

/// A CSR and a token, or a heartbeat, fit in a few KiB; anything much larger is not one.
pub(crate) const MAX_BODY: usize = 64 * 1024;
/// A client that has sent its headers gets this long to send the body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The body, up to [`MAX_BODY`].
pub(crate) async fn read_body(body: Incoming) -> Result<Bytes, ApiFailure> {
    read_body_up_to(body, MAX_BODY).await
}

/// [`read_body`] with another limit (an AdmissionReview carries a whole pod).
pub(crate) async fn read_body_up_to(body: Incoming, limit: usize) -> Result<Bytes, ApiFailure> {
    // hyper's size hint is the Content-Length, exactly, when one was sent.
    if body.size_hint().lower() > limit as u64 {
        return Err(ApiFailure::PayloadTooLarge(limit));
    }
    let collected = tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, limit).collect())
        .await
        .map_err(|_| ApiFailure::RequestTimeout)?;
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(ApiFailure::PayloadTooLarge(limit)),
        Err(e) => Err(ApiFailure::BadRequest(format!(
            "could not read the request body: {e}"
        ))),
    }
}
