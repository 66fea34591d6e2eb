//! What the inbound and outbound HTTP listeners refuse from a client, and how they say so
//! (docs/security.md): the hyper and h2 settings that bound a request head and an HTTP/2
//! connection, a cap on connections per listener, request smuggling and request-target
//! checks (`request_rules`, helped by `wire_heads`, which watches HTTP/1 heads as they
//! arrive), and rapid-reset detection. Each refusal is counted and logged (`refusal`).

mod refusal;
mod request_rules;
mod wire_heads;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::Poll;

use atomic_waker::AtomicWaker;
use http::Request;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;

pub(crate) use self::refusal::Refusal;
use self::refusal::Refusals;
pub(crate) use self::request_rules::Refused;
use self::wire_heads::HeadLedger;
pub(crate) use self::wire_heads::WireHeads;
use crate::config::HttpLimits;
use crate::config::http_limits::DEFAULT_MAX_HEADERS;
use crate::metrics::{Direction, ProxyMetrics};

/// One listener's limits, and what it has refused.
pub(crate) struct Hardening {
    limits: HttpLimits,
    refusals: Refusals,
    /// Connections open on the listener now.
    open: Arc<AtomicU32>,
}

impl Hardening {
    pub(crate) fn new(
        limits: &HttpLimits,
        metrics: &ProxyMetrics,
        direction: Direction,
    ) -> Arc<Self> {
        Arc::new(Hardening {
            limits: limits.clone(),
            refusals: Refusals::new(metrics, direction),
            open: Arc::default(),
        })
    }

    /// Sets the limits hyper and h2 enforce themselves on `builder`.
    pub(crate) fn configure(&self, builder: &mut auto::Builder<TokioExecutor>) {
        let limits = &self.limits;
        let mut http1 = builder.http1();
        // A head must fit in hyper's read buffer: one that fills it unfinished is a 431.
        // (hyper-util's builder does not expose hyper's separate head limit; the buffer
        // also bounds writes queued per connection, and 64 KiB is several TLS records.)
        http1
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes as usize);
        if limits.max_headers != DEFAULT_MAX_HEADERS {
            // Another count moves hyper's header slots from the stack to the heap.
            http1.max_headers(usize::from(limits.max_headers));
        }
        builder
            .http2()
            .max_concurrent_streams(limits.max_concurrent_streams)
            .max_header_list_size(limits.max_header_bytes);
    }

    /// A slot for a connection just accepted from `peer`, or `None` (counted and logged)
    /// when the listener is at its limit: the caller then drops the connection.
    pub(crate) fn admit(self: &Arc<Self>, peer: SocketAddr) -> Option<ClientConnection> {
        let open = self.open.fetch_add(1, Ordering::Relaxed);
        let slot = Slot(self.open.clone());
        if open >= self.limits.max_connections {
            drop(slot);
            let limit = self.limits.max_connections;
            self.refuse(
                Refusal::ConnectionLimit,
                peer,
                &format_args!("{limit} open"),
            );
            return None;
        }
        Some(ClientConnection {
            hardening: self.clone(),
            peer,
            heads: Arc::default(),
            streams: AtomicU32::new(0),
            cancelled: AtomicU32::new(0),
            abusive: AtomicBool::new(false),
            abusive_waker: AtomicWaker::new(),
            _slot: slot,
        })
    }

    pub(crate) fn refuse(&self, reason: Refusal, peer: SocketAddr, detail: &dyn std::fmt::Display) {
        self.refusals.refuse(reason, peer, detail);
    }
}

/// Gives back a listener's connection slot when the connection ends.
struct Slot(Arc<AtomicU32>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One client connection, as hardening follows it: its slot, its HTTP/1 heads, and how
/// many of its streams the client cancelled before their answers.
pub(crate) struct ClientConnection {
    hardening: Arc<Hardening>,
    peer: SocketAddr,
    heads: Arc<HeadLedger>,
    /// Requests (streams) received, and those dropped before their answer.
    streams: AtomicU32,
    cancelled: AtomicU32,
    /// Set when cancellations pass the limit; the connection is then shut down. Polled
    /// at every wake-up of the connection, so an atomic and a waker slot, not a lock.
    abusive: AtomicBool,
    abusive_waker: AtomicWaker,
    _slot: Slot,
}

impl ClientConnection {
    /// The connection's byte stream, its HTTP/1 request heads watched.
    pub(crate) fn watch_heads<I>(&self, io: I) -> WireHeads<I> {
        WireHeads::new(io, self.heads.clone())
    }

    /// Checks a request before anything else is done with it: `Err` says what to answer
    /// (the refusal is counted). The ticket must be kept until the answer is ready, then
    /// [`Ticket::answered`].
    pub(crate) fn admit_request<B>(
        self: &Arc<Self>,
        req: &Request<B>,
        direction: Direction,
    ) -> Result<Ticket, Refused> {
        let ordinal = self.streams.fetch_add(1, Ordering::Relaxed) + 1;
        if let Err(refused) = request_rules::check(req, direction, ordinal, &self.heads) {
            let what = format!("{} {}", req.method(), req.uri());
            self.hardening.refuse(refused.reason, self.peer, &what);
            return Err(refused);
        }
        Ok(Ticket {
            connection: self.clone(),
            answered: false,
        })
    }

    /// Resolves once the client has cancelled too many streams (counted and logged).
    pub(crate) async fn abusive(&self) {
        std::future::poll_fn(|cx| {
            if self.abusive.load(Ordering::Relaxed) {
                return Poll::Ready(());
            }
            self.abusive_waker.register(cx.waker());
            match self.abusive.load(Ordering::Acquire) {
                true => Poll::Ready(()),
                false => Poll::Pending,
            }
        })
        .await;
        let cancelled = self.cancelled.load(Ordering::Relaxed);
        let streams = self.streams.load(Ordering::Relaxed);
        self.hardening.refuse(
            Refusal::RapidReset,
            self.peer,
            &format_args!("{cancelled} of {streams} streams cancelled before their answer"),
        );
    }

    /// Counts why the connection ended, if a limit ended it.
    pub(crate) fn ended(&self, error: &(dyn std::error::Error + 'static)) {
        if let Some(reason) = request_rules::refusal_of(error) {
            self.hardening.refuse(reason, self.peer, &error);
        }
    }

    fn cancelled_one(&self) {
        let cancelled = self.cancelled.fetch_add(1, Ordering::Relaxed) + 1;
        let streams = self.streams.load(Ordering::Relaxed);
        // Past the limit, and at least half of the streams cancelled: an app that is slow
        // under a tight timeout cancels some, an attack nearly all.
        if cancelled >= self.hardening.limits.max_premature_resets
            && cancelled * 2 >= streams
            && !self.abusive.swap(true, Ordering::Release)
        {
            self.abusive_waker.wake();
        }
    }
}

/// A request being served: dropped without [`Ticket::answered`], its stream was
/// cancelled by the client before the answer (an HTTP/2 reset, or a closed connection).
pub(crate) struct Ticket {
    connection: Arc<ClientConnection>,
    answered: bool,
}

impl Ticket {
    pub(crate) fn answered(mut self) {
        self.answered = true;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.answered {
            self.connection.cancelled_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hardening(limits: HttpLimits) -> Arc<Hardening> {
        Hardening::new(&limits, &ProxyMetrics::new(), Direction::Inbound)
    }

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 1))
    }

    #[test]
    fn connections_over_the_limit_are_refused_until_one_ends() {
        let hardening = hardening(HttpLimits {
            max_connections: 2,
            ..HttpLimits::default()
        });
        let first = hardening.admit(peer()).unwrap();
        let _second = hardening.admit(peer()).unwrap();
        assert!(hardening.admit(peer()).is_none());
        drop(first);
        assert!(hardening.admit(peer()).is_some());
    }

    #[tokio::test]
    async fn trips_when_most_streams_are_cancelled() {
        let hardening = hardening(HttpLimits {
            max_premature_resets: 3,
            ..HttpLimits::default()
        });
        let connection = Arc::new(hardening.admit(peer()).unwrap());
        let req = Request::get("/").body(()).unwrap();
        for _ in 0..3 {
            connection
                .admit_request(&req, Direction::Inbound)
                .ok()
                .unwrap()
                .answered();
        }
        for _ in 0..3 {
            drop(
                connection
                    .admit_request(&req, Direction::Inbound)
                    .ok()
                    .unwrap(),
            );
        }
        // 3 of 6 cancelled: at the limit, and half.
        tokio::time::timeout(std::time::Duration::from_secs(5), connection.abusive())
            .await
            .expect("tripped");
    }

    #[test]
    fn answered_streams_do_not_count() {
        let hardening = hardening(HttpLimits {
            max_premature_resets: 2,
            ..HttpLimits::default()
        });
        let connection = Arc::new(hardening.admit(peer()).unwrap());
        let req = Request::get("/").body(()).unwrap();
        for _ in 0..10 {
            connection
                .admit_request(&req, Direction::Inbound)
                .ok()
                .unwrap()
                .answered();
        }
        drop(
            connection
                .admit_request(&req, Direction::Inbound)
                .ok()
                .unwrap(),
        );
        drop(
            connection
                .admit_request(&req, Direction::Inbound)
                .ok()
                .unwrap(),
        );
        // 2 of 12: under half, so a slow app with tight timeouts is not taken for abuse.
        assert_eq!(connection.cancelled.load(Ordering::Relaxed), 2);
        assert!(!connection.abusive.load(Ordering::Relaxed), "must not trip");
    }
}
