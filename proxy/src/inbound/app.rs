//! Forwarding to the local app, in the protocol it speaks: HTTP/1.1 through a pool of
//! keep-alive connections, or HTTP/2 over one multiplexed connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::AppProtocol;
use crate::error::{ErrorCode, ProxyError};
use crate::metrics::ProxyMetrics;
use crate::transport::{Http2Connection, Transport};

pub(crate) struct AppClient {
    addr: SocketAddr,
    /// `addr` as a URI authority, made once.
    authority: Authority,
    protocol: AppProtocol,
    http1: Client<HttpConnector, Incoming>,
    http2: Http2Connection<Incoming>,
}

impl AppClient {
    pub(crate) fn new(
        addr: SocketAddr,
        protocol: AppProtocol,
        connect_timeout: Duration,
        metrics: Arc<ProxyMetrics>,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        let http1 = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        AppClient {
            addr,
            authority: Authority::try_from(addr.to_string().as_str())
                .expect("a socket address is a valid authority"),
            protocol,
            http1,
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
            // The app sees the Host the caller asked for; the connection goes to `addr`.
            if let Some(host) = original
                .authority
                .as_ref()
                .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
            {
                parts.headers.insert(http::header::HOST, host);
            }
            parts.uri = uri(self.authority.clone(), path)?;
            parts.version = Version::HTTP_11;
            self.http1
                .request(Request::from_parts(parts, body))
                .await
                .map_err(|e| self.http1_error(&e))
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

    fn http1_error(&self, error: &hyper_util::client::legacy::Error) -> ProxyError {
        let code = if error.is_connect() {
            ErrorCode::ConnectFailed
        } else {
            ErrorCode::UpstreamReset
        };
        let mut message = format!("app at {}: {error}", self.addr);
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        ProxyError::new(code, message)
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
