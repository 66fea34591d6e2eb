//! The bottom of the stack: the try goes out on its endpoint's pooled mTLS HTTP/2
//! connection (made on first use). A failed connect and a reset or refused stream are
//! told apart for `retryOn`. The balancer's latency sample runs from the send on a ready
//! connection to the response headers.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use hyper::body::Incoming;
use tower::Service;

use super::{Picked, TryError};
use crate::error::{ErrorCode, ProxyError};
use crate::resilience::retry_on::TryOutcome;

#[derive(Clone, Copy)]
pub(crate) struct Connection;

impl<'a> Service<Picked<'a>> for Connection {
    type Response = Response<Incoming>;
    type Error = TryError;
    /// Boxed: the connect and the send are `async fn`s whose futures cannot be named.
    type Future = Pin<Box<dyn Future<Output = Result<Response<Incoming>, TryError>> + Send + 'a>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), TryError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Picked<'a>) -> Self::Future {
        let Picked {
            request,
            endpoint,
            mut in_flight,
            ..
        } = req;
        Box::pin(async move {
            let sent = async {
                let mut sender = endpoint
                    .sender()
                    .await
                    .map_err(|e| TryError::new(e, Some(TryOutcome::ConnectFailure)))?;
                in_flight.dispatched(tokio::time::Instant::now());
                sender
                    .send_request(request)
                    .await
                    .map_err(|e| send_error(endpoint.addr(), &e))
            }
            .await;
            in_flight.finish(sent.is_ok(), tokio::time::Instant::now());
            sent
        })
    }
}

/// A failed send: a reset, or a refused stream (the peer did not process the request).
fn send_error(addr: SocketAddr, error: &hyper::Error) -> TryError {
    let refused = std::error::Error::source(error)
        .and_then(|e| e.downcast_ref::<h2::Error>())
        .and_then(h2::Error::reason)
        == Some(h2::Reason::REFUSED_STREAM);
    let outcome = if refused {
        TryOutcome::RefusedStream
    } else {
        TryOutcome::Reset
    };
    let error = ProxyError::new(ErrorCode::UpstreamReset, format!("{addr}: {error}"));
    TryError::new(error, Some(outcome))
}
