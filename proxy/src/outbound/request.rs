//! Turning the app's request into the one sent to a peer sidecar: always HTTP/2, with
//! scheme and authority in the URI, hop-by-hop headers and mesh-reserved headers removed.

use http::request::Parts;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Uri, Version};

use crate::body::strip_hop_by_hop;
use crate::error::{ErrorCode, ProxyError};
use crate::{CLIENT_ID_HEADER, ORIG_PROTO_HEADER};

/// Rewrites the head in place for the HTTP/2 hop between sidecars.
pub(crate) fn prepare(parts: &mut Parts, authority: Authority) -> Result<(), ProxyError> {
    let mut uri = std::mem::take(&mut parts.uri).into_parts();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(authority);
    if uri.path_and_query.is_none() {
        uri.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    parts.uri = Uri::from_parts(uri)
        .map_err(|e| ProxyError::new(ErrorCode::BadRequest, format!("invalid URI: {e}")))?;
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(http::header::HOST);
    // Only the inbound sidecar may say who called; never pass on what the app claims.
    parts.headers.remove(CLIENT_ID_HEADER);
    parts.headers.remove(ORIG_PROTO_HEADER);
    if parts.version < Version::HTTP_2 {
        // So that the inbound side can speak to its app as our app spoke to us.
        parts
            .headers
            .insert(ORIG_PROTO_HEADER, HeaderValue::from_static("HTTP/1.1"));
    }
    parts.version = Version::HTTP_2;
    Ok(())
}

/// The prepared head itself, for a try that no other try can follow, leaving an empty
/// head behind: copying its headers is the dearest part of a try on a route without
/// retries. Its extensions stay behind as [`copy_head`]'s do: they are the proxy's own.
pub(super) fn take_head(parts: &mut Parts) -> Request<()> {
    let (empty, ()) = Request::new(()).into_parts();
    let mut head = std::mem::replace(parts, empty);
    head.extensions.clear();
    Request::from_parts(head, ())
}

/// A copy of a prepared head, for one more try.
pub(super) fn copy_head(parts: &Parts) -> Request<()> {
    let mut request = Request::new(());
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    request
}
