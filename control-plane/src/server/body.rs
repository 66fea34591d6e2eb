//! Response bodies: whole ones (JSON, text) and the streamed body of `/v1/watch`, which
//! yields whatever a feeding task sends and ends when that task lets go.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body, Frame};
use serde::Serialize;
use tokio::sync::mpsc;

/// The body type of every response this server makes.
pub(crate) type RespBody = BoxBody<Bytes, Infallible>;

/// A response with a whole body and a content type.
pub(crate) fn whole(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<RespBody> {
    let mut response = Response::new(Full::new(body.into()).boxed());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A JSON response. Serializing the wire types cannot fail; if it ever did, the client
/// gets a 500 rather than a half-written body.
pub(crate) fn json(status: StatusCode, value: &impl Serialize) -> Response<RespBody> {
    match serde_json::to_vec(value) {
        Ok(bytes) => whole(status, "application/json", bytes),
        Err(_) => whole(
            StatusCode::INTERNAL_SERVER_ERROR,
            "application/json",
            r#"{"error":"internal","message":"could not encode the response"}"#,
        ),
    }
}

/// A streamed body fed through a channel: each message is one frame.
pub(crate) struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl ChannelBody {
    /// The body, boxed like every other.
    pub(crate) fn boxed_from(rx: mpsc::Receiver<Bytes>) -> RespBody {
        ChannelBody { rx }.boxed()
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|line| line.map(|bytes| Ok(Frame::data(bytes))))
    }
}
