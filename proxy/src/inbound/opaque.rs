//! Opaque TCP arriving at the inbound side: from a peer sidecar that negotiated ALPN
//! `outrigger-tcp/1` (docs/opaque-tcp.md: a header names the app port, then raw bytes),
//! or plaintext in permissive mode that is not HTTP. The ServerPolicy decides as for
//! HTTP, except that a rule with an HTTP `match` never matches; a refused caller has its
//! connection closed and the log names why.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};

use super::Inbound;
use super::accept::Caller;
use crate::metrics::Denied;
use crate::opaque::{HEADER_TIMEOUT, read_header, relay};
use crate::transport::connect_tcp;

impl Inbound {
    /// A peer sidecar's opaque connection: header, authorization, then the app.
    pub(super) async fn serve_opaque<I>(&self, mut io: I, caller: &Caller, peer: SocketAddr)
    where
        I: AsyncRead + AsyncWrite + Unpin,
    {
        let port = match tokio::time::timeout(HEADER_TIMEOUT, read_header(&mut io)).await {
            Ok(Ok(port)) => port,
            Ok(Err(error)) => {
                tracing::info!(%peer, caller = %caller, %error, "bad opaque TCP header");
                return;
            }
            Err(_) => {
                tracing::info!(%peer, caller = %caller, "no opaque TCP header in time");
                return;
            }
        };
        self.relay_to_app(io, caller, Some(port), peer).await;
    }

    /// Permissive plaintext that is not HTTP: for the port it was redirected from.
    pub(super) async fn serve_plain_opaque<I>(
        &self,
        io: I,
        caller: &Caller,
        port: Option<u16>,
        peer: SocketAddr,
    ) where
        I: AsyncRead + AsyncWrite + Unpin,
    {
        self.relay_to_app(io, caller, port, peer).await;
    }

    async fn relay_to_app<I>(&self, io: I, caller: &Caller, port: Option<u16>, peer: SocketAddr)
    where
        I: AsyncRead + AsyncWrite + Unpin,
    {
        let policy = self.policy.load_full();
        if !policy.allows_tcp(caller.id()) {
            // Resolved on a denial only: an allowed connection counts per service.
            self.metrics
                .edge(caller.id().unwrap_or(""), "")
                .denials
                .record(Denied::Tcp);
            let reason = policy.explain_tcp_denial(caller.id());
            if let Some(suppressed) = self.denial_log.admit(caller.id(), &reason) {
                tracing::warn!(
                    %peer,
                    caller = %caller,
                    port,
                    %reason,
                    suppressed,
                    "opaque TCP connection denied by the server policy"
                );
            }
            // Counted as a connection that carried nothing.
            self.metrics.tcp.opened();
            self.metrics.tcp.closed(0, 0, std::time::Duration::ZERO);
            return;
        }
        let Some(addr) = self.apps.addr(port) else {
            tracing::info!(%peer, "opaque TCP connection with no app port (set OUTRIGGER_APP_ADDR)");
            return;
        };
        match connect_tcp(addr, self.apps.connect_timeout()).await {
            Ok(app) => {
                tracing::debug!(%peer, caller = %caller, %addr, "opaque TCP connection");
                relay(io, app, None, &self.metrics).await;
            }
            Err(error) => tracing::info!(%peer, %addr, %error, "cannot reach the app"),
        }
    }
}
