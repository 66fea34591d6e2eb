//! A small answer leaves whole. When the app's answer has a small `Content-Length`, its
//! head is held until its body has arrived, so that HEADERS and DATA leave in one write
//! and a peer never holds a head whose body died with this instance. An app that
//! writes its head and body separately (many do: Python's `http.server`, for one) would
//! otherwise be forwarded in two writes, with a window between them.
//!
//! It also turns an app that breaks off in the middle of a small answer into a 502
//! `upstream-reset` instead of a truncated 200, which the caller's sidecar can retry
//! (`gateway-error`). Bounded: only up to [`SMALL_ANSWER`] bytes, and the head waits at
//! most [`HOLD`] for its body, after which the answer streams as it comes.

use std::time::Duration;

use http::Response;
use http::header::CONTENT_LENGTH;
use http_body::Body;
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::body::held::{Held, ReadAhead, read_ahead};
use crate::error::{ErrorCode, ProxyError};

/// The largest body held with its head: one HTTP/2 DATA frame, one TLS record.
pub(super) const SMALL_ANSWER: u64 = 16 * 1024;

/// The longest a small answer's head waits for its body.
pub(super) const HOLD: Duration = Duration::from_millis(50);

/// The app's answer, its body read ahead when it is small; `Err` when the body broke
/// before its end.
pub(super) async fn whole_if_small(
    response: Response<Incoming>,
) -> Result<Response<Held<Incoming>>, ProxyError> {
    let small = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|length| length <= SMALL_ANSWER);
    if !small || response.body().is_end_stream() {
        return Ok(response.map(Held::passthrough));
    }
    let (head, body) = response.into_parts();
    let until = Instant::now() + HOLD;
    let (held, found) = read_ahead(body, SMALL_ANSWER as usize, until).await;
    if found == ReadAhead::Failed {
        return Err(ProxyError::new(
            ErrorCode::UpstreamReset,
            "the app broke off in the middle of its answer",
        ));
    }
    Ok(Response::from_parts(head, held))
}
