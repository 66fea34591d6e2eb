//! Request bodies on the outbound side. A body known to fit in [`MAX_RETRY_BODY`] is read
//! into memory first, so that a retry can send it again; a larger one is streamed through
//! untouched (what was read while finding out is sent first) and is never retried.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

pub(crate) use super::policy::MAX_RETRY_BODY;

/// A request body as the outbound side sends it.
#[derive(Debug)]
pub(crate) enum OutboundBody {
    /// Fully in memory: can be sent any number of times.
    Buffered(Option<Bytes>),
    /// Too large to buffer: what was already read, then the rest, once.
    Streaming {
        prefix: Option<Bytes>,
        rest: Incoming,
    },
}

impl OutboundBody {
    /// Reads `body` into memory if it fits, otherwise keeps streaming it.
    pub(crate) async fn from_incoming(mut body: Incoming) -> Result<OutboundBody, hyper::Error> {
        if body.is_end_stream() {
            return Ok(OutboundBody::Buffered(None));
        }
        if body.size_hint().lower() > MAX_RETRY_BODY as u64 {
            return Ok(OutboundBody::Streaming {
                prefix: None,
                rest: body,
            });
        }
        let mut buffer = BytesMut::new();
        while let Some(frame) = body.frame().await {
            // Trailers end the body here; a request with trailers is sent without them on
            // a retry only if we dropped them, so keep it streaming instead.
            let data = match frame?.into_data() {
                Ok(data) => data,
                Err(_trailers) => {
                    return Ok(OutboundBody::Streaming {
                        prefix: Some(buffer.freeze()),
                        rest: body,
                    });
                }
            };
            buffer.extend_from_slice(&data);
            if buffer.len() > MAX_RETRY_BODY {
                return Ok(OutboundBody::Streaming {
                    prefix: Some(buffer.freeze()),
                    rest: body,
                });
            }
        }
        Ok(OutboundBody::Buffered(Some(buffer.freeze())))
    }

    /// A copy for another try, if this body can be sent again.
    pub(crate) fn try_clone(&self) -> Option<OutboundBody> {
        match self {
            OutboundBody::Buffered(bytes) => Some(OutboundBody::Buffered(bytes.clone())),
            OutboundBody::Streaming { .. } => None,
        }
    }
}

impl Body for OutboundBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            OutboundBody::Buffered(bytes) => Poll::Ready(
                bytes
                    .take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            OutboundBody::Streaming { prefix, rest } => {
                if let Some(prefix) = prefix.take().filter(|b| !b.is_empty()) {
                    return Poll::Ready(Some(Ok(Frame::data(prefix))));
                }
                Pin::new(rest).poll_frame(cx)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            OutboundBody::Buffered(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
            OutboundBody::Streaming { prefix, rest } => prefix.is_none() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            OutboundBody::Buffered(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            OutboundBody::Streaming { prefix, rest } => {
                let extra = prefix.as_ref().map_or(0, |b| b.len() as u64);
                let inner = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + extra);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + extra);
                }
                hint
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;
    use http_body_util::Full;
    use hyper_util::rt::TokioIo;

    /// Sends `body` to an in-process server that turns it into an [`OutboundBody`];
    /// returns (replayable, bytes read back, bytes read back from a clone).
    async fn roundtrip(body: Vec<u8>) -> (bool, usize, Option<usize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let tx = std::sync::Mutex::new(Some(tx));
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let tx = tx.lock().unwrap().take();
                async move {
                    let body = OutboundBody::from_incoming(req.into_body()).await.unwrap();
                    let clone = body.try_clone();
                    let replayable = clone.is_some();
                    let len = body.collect().await.unwrap().to_bytes().len();
                    let clone_len = match clone {
                        Some(c) => Some(c.collect().await.unwrap().to_bytes().len()),
                        None => None,
                    };
                    if let Some(tx) = tx {
                        let _ = tx.send((replayable, len, clone_len));
                    }
                    Ok::<_, hyper::Error>(http::Response::new(Full::new(Bytes::new())))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let request = Request::post("/")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        sender.send_request(request).await.unwrap();
        rx.await.unwrap()
    }

    #[tokio::test]
    async fn small_bodies_are_replayable_large_ones_stream_once() {
        assert_eq!(roundtrip(Vec::new()).await, (true, 0, Some(0)));
        assert_eq!(roundtrip(vec![7; 1000]).await, (true, 1000, Some(1000)));
        assert_eq!(
            roundtrip(vec![7; MAX_RETRY_BODY]).await,
            (true, MAX_RETRY_BODY, Some(MAX_RETRY_BODY))
        );
        let big = MAX_RETRY_BODY * 3;
        assert_eq!(
            roundtrip(vec![7; big]).await,
            (false, big, None),
            "streamed whole, once"
        );
    }
}
