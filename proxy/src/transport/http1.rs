//! Keep-alive HTTP/1.1 connections to one address: the local app, for apps that speak
//! HTTP/1. One request at a time per connection, as HTTP/1 allows.
//!
//! A general-purpose pool (hyper-util's) keys its connections by scheme and authority,
//! and returns a connection only once its answer's body has been read, through a task it
//! spawns per request. The app is one address, so here the connections are a plain list:
//! a connection goes back on the list as soon as its answer's head has arrived, and a
//! request takes the newest one that hyper says is ready for another request (its last
//! answer read to the end). A connection still streaming an answer is passed over, not
//! waited for; one the app closed, or whose answer was abandoned halfway (hyper then
//! closes it), is dropped from the list when a request finds it.
//!
//! Idle connections are not reaped by a timer: a connection idle for longer than
//! [`IDLE_TIMEOUT`] is dropped by the next request that finds it, and an app that keeps
//! connections open longer than it likes closes them itself (its own keep-alive timeout),
//! which hyper's connection task sees.

use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::tls::connect_tcp;
use crate::error::{ErrorCode, ProxyError};

/// A connection unused this long is closed by the next request that finds it.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The most connections kept; past it, a connection closes once its answer is read.
/// Far above what one app instance serves at once through its sidecar.
const MAX_KEPT: usize = 256;

/// Keep-alive HTTP/1.1 connections to `addr`.
pub(crate) struct Http1Pool<B> {
    addr: SocketAddr,
    connect_timeout: Duration,
    /// Connections whose last request has its answer's head: free, or still streaming
    /// that answer's body. Newest last.
    kept: Mutex<Vec<Kept<B>>>,
}

struct Kept<B> {
    sender: SendRequest<B>,
    /// When its last request was answered.
    since: Instant,
}

impl<B> Http1Pool<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pub(crate) fn new(addr: SocketAddr, connect_timeout: Duration) -> Self {
        Http1Pool {
            addr,
            connect_timeout,
            kept: Mutex::new(Vec::new()),
        }
    }

    /// Sends `req` (origin-form URI, `Host` set) on a kept connection, or on a new one.
    pub(crate) async fn send(&self, mut req: Request<B>) -> Result<Response<Incoming>, ProxyError> {
        if let Some(mut sender) = self.checkout() {
            match sender.try_send_request(req).await {
                Ok(response) => {
                    self.keep(sender);
                    return Ok(response);
                }
                // The app closed the connection just as this request took it, before any
                // of the request was written: it is safe to send on a new connection.
                Err(mut error) => match error.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(self.sent_error(&error.into_error())),
                },
            }
        }
        // Boxed: the TCP connect and the handshake make a future much larger than a
        // request's, and nearly every request finds a kept connection.
        let mut sender = Box::pin(self.connect()).await?;
        let response = sender
            .send_request(req)
            .await
            .map_err(|e| self.sent_error(&e))?;
        self.keep(sender);
        Ok(response)
    }

    /// The newest kept connection that is ready for a request; closed and expired ones
    /// found on the way leave the list.
    fn checkout(&self) -> Option<SendRequest<B>> {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let mut at = kept.len();
        while at > 0 {
            at -= 1;
            let candidate = &kept[at];
            if candidate.sender.is_closed()
                || now.saturating_duration_since(candidate.since) >= IDLE_TIMEOUT
            {
                kept.swap_remove(at);
            } else if candidate.sender.is_ready() {
                return Some(kept.swap_remove(at).sender);
            }
        }
        None
    }

    fn keep(&self, sender: SendRequest<B>) {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() < MAX_KEPT {
            kept.push(Kept {
                sender,
                since: Instant::now(),
            });
        }
    }

    async fn connect(&self) -> Result<SendRequest<B>, ProxyError> {
        let addr = self.addr;
        let tcp = connect_tcp(addr, self.connect_timeout).await?;
        let (sender, connection) = http1::handshake(TokioIo::new(tcp)).await.map_err(|e| {
            ProxyError::new(
                ErrorCode::ConnectFailed,
                format!("HTTP/1.1 with {addr}: {e}"),
            )
        })?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%addr, %error, "HTTP/1.1 connection ended");
            }
        });
        Ok(sender)
    }

    /// A request that reached the app's connection and failed there, with hyper's causes.
    fn sent_error(&self, error: &hyper::Error) -> ProxyError {
        let mut message = format!("app at {}: {error}", self.addr);
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        ProxyError::new(ErrorCode::UpstreamReset, message)
    }

    #[cfg(test)]
    fn kept(&self) -> usize {
        self.kept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests;
