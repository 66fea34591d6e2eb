//! Body types of the data path. Upstream bodies stream through untouched; only the
//! proxy's own small responses are built in memory.

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;

/// A response body: the upstream's, streamed, or one the proxy made.
pub(crate) type ProxyBody = Either<Incoming, Full<Bytes>>;

/// A body the proxy made.
pub(crate) fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Either::Right(Full::new(bytes.into()))
}

/// Headers that describe one hop's connection and must not be forwarded (RFC 9110 §7.6.1).
pub(crate) fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    use http::header::{CONNECTION, PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE};
    // Headers named by `Connection` are hop-by-hop too.
    let named: Vec<http::HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| http::HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        CONNECTION,
        PROXY_AUTHORIZATION,
        TRAILER,
        TRANSFER_ENCODING,
        UPGRADE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
    // `te: trailers` is the one TE value HTTP/2 allows, and gRPC needs it.
    if headers.get(TE).is_some_and(|v| v != "trailers") {
        headers.remove(TE);
    }
}
