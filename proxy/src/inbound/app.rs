//! Forwarding to the local app, in the protocol it speaks: HTTP/1.1 through a pool of
//! keep-alive connections, or HTTP/2 over one multiplexed connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;

use crate::config::AppProtocol;
use crate::error::{ErrorCode, ProxyError};
use crate::metrics::ProxyMetrics;
use crate::transport::{Http1Pool, Http2Connection, Transport};

pub(crate) struct AppClient {
    addr: SocketAddr,
    /// `addr` as a URI authority, made once.
    authority: Authority,
    protocol: AppProtocol,
    http1: Http1Pool<Incoming>,
    http2: Http2Connection<Incoming>,
}

impl AppClient {
    pub(crate) fn new(
        addr: SocketAddr,
        protocol: AppProtocol,
        connect_timeout: Duration,
        metrics: Arc<ProxyMetrics>,
    ) -> Self {
        AppClient {
            addr,
            authority: Authority::try_from(addr.to_string().as_str())
                .expect("a socket address is a valid authority"),
            protocol,
            http1: Http1Pool::new(addr, connect_timeout),
            http2: Http2Connection::new(addr, Transport::Plain, connect_timeout, metrics),
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends `req` to the app. `caller_spoke_http1` says how the calling app spoke.
    pub(crate) async fn send(
        &self,
        req: Request<Incoming>,
        caller_spoke_http1: bool,
    ) -> Result<Response<Incoming>, ProxyError> {
        let http1 = match self.protocol {
            AppProtocol::Http1 => true,
            AppProtocol::Http2 => false,
            AppProtocol::Auto => caller_spoke_http1,
        };
        let (mut parts, body) = req.into_parts();
        let original = std::mem::take(&mut parts.uri).into_parts();
        let path = original
            .path_and_query
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        if http1 {
            // The app sees the Host the caller asked for (else its own address), and the
            // path in origin form; the connection goes to `addr`.
            let host = original
                .authority
                .as_ref()
                .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok());
            match host {
                Some(host) => {
                    parts.headers.insert(http::header::HOST, host);
                }
                None if !parts.headers.contains_key(http::header::HOST) => {
                    let own = http::HeaderValue::from_str(self.authority.as_str())
                        .expect("a socket address is a valid header value");
                    parts.headers.insert(http::header::HOST, own);
                }
                None => {}
            }
            parts.uri = Uri::from(path);
            parts.version = Version::HTTP_11;
            self.http1.send(Request::from_parts(parts, body)).await
        } else {
            let authority = original.authority.unwrap_or_else(|| self.authority.clone());
            parts.uri = uri(authority, path)?;
            parts.version = Version::HTTP_2;
            let mut sender = self.http2.sender().await?;
            sender
                .send_request(Request::from_parts(parts, body))
                .await
                .map_err(|e| {
                    ProxyError::new(
                        ErrorCode::UpstreamReset,
                        format!("app at {}: {e}", self.addr),
                    )
                })
        }
    }
}

fn uri(authority: Authority, path: PathAndQuery) -> Result<Uri, ProxyError> {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(authority);
    parts.path_and_query = Some(path);
    Uri::from_parts(parts)
        .map_err(|e| ProxyError::new(ErrorCode::BadRequest, format!("invalid URI: {e}")))
}
