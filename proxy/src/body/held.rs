//! A response body read ahead before the caller sees any of it, so that how it ends can
//! still decide a retry. gRPC carries its status in trailers, after the messages: a
//! `retryOn: [unavailable]` can only be honoured for a response with a body if the
//! proxy holds that body until its trailers, and nothing has reached the caller yet.
//!
//! Holding is bounded twice: by size (the retry buffer, [`MAX_RETRY_BODY`]) and by time
//! (a window from the response head). A response that outgrows either is passed on as it
//! stands, the frames read so far first, and is no longer retried: a server stream that
//! pauses between messages is delayed by at most the window, once.
//!
//! [`MAX_RETRY_BODY`]: crate::resilience::policy::MAX_RETRY_BODY

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use tokio::time::Instant;

/// A body whose first frames (or an error) may have been read already.
#[derive(Debug)]
pub(crate) struct Held<B: Body> {
    frames: VecDeque<Frame<Bytes>>,
    /// The error the read-ahead met, given to the caller after the frames.
    error: Option<B::Error>,
    rest: Option<B>,
}

/// How a read-ahead ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadAhead {
    /// The whole body was read; `grpc_status` is its trailers' `grpc-status`, if any.
    Complete { grpc_status: Option<u16> },
    /// The body broke before its end.
    Failed,
    /// The size or time bound was reached first: the rest streams through.
    Released,
}

impl<B: Body> Held<B> {
    /// The body untouched, streamed as it comes.
    pub(crate) fn passthrough(body: B) -> Self {
        Held {
            frames: VecDeque::new(),
            error: None,
            rest: Some(body),
        }
    }
}

impl From<hyper::body::Incoming> for Held<hyper::body::Incoming> {
    fn from(body: hyper::body::Incoming) -> Self {
        Held::passthrough(body)
    }
}

/// Reads `body` until it ends, up to `limit` bytes of data and until `until`.
pub(crate) async fn read_ahead<B>(mut body: B, limit: usize, until: Instant) -> (Held<B>, ReadAhead)
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut frames = VecDeque::new();
    let mut read = 0;
    loop {
        if body.is_end_stream() {
            return (held(frames, None, None), complete(None));
        }
        match tokio::time::timeout_at(until, body.frame()).await {
            Err(_elapsed) => return (held(frames, None, Some(body)), ReadAhead::Released),
            Ok(None) => return (held(frames, None, None), complete(None)),
            Ok(Some(Err(error))) => return (held(frames, Some(error), None), ReadAhead::Failed),
            Ok(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let status = trailers
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok());
                    frames.push_back(frame);
                    return (held(frames, None, None), complete(status));
                }
                read += frame.data_ref().map_or(0, Bytes::len);
                frames.push_back(frame);
                if read > limit {
                    return (held(frames, None, Some(body)), ReadAhead::Released);
                }
            }
        }
    }
}

fn complete(grpc_status: Option<u16>) -> ReadAhead {
    ReadAhead::Complete { grpc_status }
}

fn held<B: Body>(
    frames: VecDeque<Frame<Bytes>>,
    error: Option<B::Error>,
    rest: Option<B>,
) -> Held<B> {
    Held {
        frames,
        error,
        rest,
    }
}

impl<B> Body for Held<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        if let Some(frame) = this.frames.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        if let Some(error) = this.error.take() {
            return Poll::Ready(Some(Err(error)));
        }
        match this.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
            && self.error.is_none()
            && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let held: u64 = self
            .frames
            .iter()
            .filter_map(|f| f.data_ref())
            .map(|d| d.len() as u64)
            .sum();
        match &self.rest {
            Some(rest) => {
                let hint = rest.size_hint();
                let mut total = SizeHint::new();
                total.set_lower(hint.lower() + held);
                if let Some(upper) = hint.upper() {
                    total.set_upper(upper + held);
                }
                total
            }
            None => SizeHint::with_exact(held),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use http::{HeaderMap, HeaderValue};
    use http_body_util::BodyExt as _;

    use super::*;

    /// A body that plays its frames, then either ends or never says anything more.
    #[derive(Debug, Default)]
    pub(crate) struct Script {
        pub frames: VecDeque<Result<Frame<Bytes>, String>>,
        pub then_hang: bool,
    }

    impl Script {
        /// A gRPC answer: one message of `size` bytes, then trailers with `grpc_status`.
        pub(crate) fn grpc(size: usize, grpc_status: u16) -> Script {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from(grpc_status));
            Script {
                frames: [
                    Ok(Frame::data(Bytes::from(vec![0; size]))),
                    Ok(Frame::trailers(trailers)),
                ]
                .into(),
                then_hang: false,
            }
        }
    }

    impl Body for Script {
        type Data = Bytes;
        type Error = String;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, String>>> {
            let this = self.get_mut();
            match this.frames.pop_front() {
                Some(frame) => Poll::Ready(Some(frame)),
                None if this.then_hang => Poll::Pending,
                None => Poll::Ready(None),
            }
        }
    }

    async fn replayed(held: Held<Script>) -> (usize, Option<HeaderMap>) {
        let collected = held.collect().await.expect("the body as held");
        let trailers = collected.trailers().cloned();
        (collected.to_bytes().len(), trailers)
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(50)
    }

    #[tokio::test(start_paused = true)]
    async fn a_small_grpc_answer_is_read_to_its_trailers_and_replayed_whole() {
        let (held, found) = read_ahead(Script::grpc(100, 14), 1024, soon()).await;
        assert_eq!(
            found,
            ReadAhead::Complete {
                grpc_status: Some(14)
            }
        );
        let (len, trailers) = replayed(held).await;
        assert_eq!(len, 100);
        assert_eq!(trailers.unwrap()["grpc-status"], "14");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_larger_than_the_limit_is_released_with_nothing_lost() {
        let (held, found) = read_ahead(Script::grpc(2048, 0), 1024, soon()).await;
        assert_eq!(found, ReadAhead::Released);
        let (len, trailers) = replayed(held).await;
        assert_eq!(len, 2048);
        assert!(trailers.is_some(), "the rest streamed through");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_that_pauses_is_released_when_the_window_closes() {
        let mut script = Script::grpc(10, 0);
        script.frames.pop_back();
        script.then_hang = true;
        let (held, found) = read_ahead(script, 1024, soon()).await;
        assert_eq!(found, ReadAhead::Released);
        let mut held = held;
        let first = held.frame().await.unwrap().unwrap();
        assert_eq!(
            first.data_ref().unwrap().len(),
            10,
            "what was read comes first"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_breaks_is_reported_and_the_error_replayed_after_its_frames() {
        let script = Script {
            frames: [
                Ok(Frame::data(Bytes::from_static(b"ab"))),
                Err("reset".into()),
            ]
            .into(),
            then_hang: false,
        };
        let (mut held, found) = read_ahead(script, 1024, soon()).await;
        assert_eq!(found, ReadAhead::Failed);
        assert!(held.frame().await.unwrap().is_ok());
        assert_eq!(held.frame().await.unwrap().unwrap_err(), "reset");
    }
}
