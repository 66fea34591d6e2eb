//! Body types of the data path. Upstream bodies stream through untouched; only the
//! proxy's own small responses are built in memory.

pub(crate) mod held;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use pin_project_lite::pin_project;

use self::held::Held;
use crate::grpc_status::GrpcCounts;

/// A response body: the upstream's, streamed, or one the proxy made.
pub(crate) type ProxyBody = Either<Upstream, Full<Bytes>>;

pin_project! {
    /// The upstream's body, streamed as it comes. For a gRPC answer, the `grpc-status`
    /// of its trailers is counted as they pass; for anything else it is untouched.
    pub(crate) struct Upstream {
        #[pin]
        body: Held<Incoming>,
        grpc: Option<Arc<GrpcCounts>>,
    }
}

/// The upstream's answer for the caller: counted in `grpc` if it is a gRPC answer (its
/// status in the headers now, else in its trailers later).
pub(crate) fn upstream(
    response: http::Response<impl Into<Held<Incoming>>>,
    grpc: Option<&Arc<GrpcCounts>>,
) -> http::Response<ProxyBody> {
    // A trailers-only answer carries its status in the headers: nothing to watch for.
    let grpc = grpc
        .filter(|counts| !counts.record(response.headers()))
        .cloned();
    response.map(|body| {
        Either::Left(Upstream {
            body: body.into(),
            grpc,
        })
    })
}

impl Body for Upstream {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.project();
        let polled = this.body.poll_frame(cx);
        if let (Some(counts), Poll::Ready(Some(Ok(frame)))) = (this.grpc.as_ref(), &polled)
            && let Some(trailers) = frame.trailers_ref()
        {
            counts.record(trailers);
            *this.grpc = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A body the proxy made.
pub(crate) fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Either::Right(Full::new(bytes.into()))
}

/// Headers that describe one hop's connection and must not be forwarded (RFC 9110 §7.6.1).
pub(crate) fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    use http::header::{CONNECTION, PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE};
    // Most heads carry none (HTTP/2 forbids them), and one look at each name costs a
    // fraction of the eight hashed removals below (about 1,500 instructions per head).
    // A name listed in `Connection` needs `Connection` itself, which this sees.
    let hop_by_hop = |name: &http::HeaderName| {
        [
            &CONNECTION,
            &PROXY_AUTHORIZATION,
            &TRAILER,
            &TRANSFER_ENCODING,
            &UPGRADE,
            &TE,
        ]
        .contains(&name)
            || matches!(name.as_str(), "keep-alive" | "proxy-connection")
    };
    if !headers.keys().any(hop_by_hop) {
        return;
    }
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

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::strip_hop_by_hop;

    fn head(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, value.parse().unwrap());
        }
        headers
    }

    fn names(headers: &HeaderMap) -> Vec<&str> {
        let mut names: Vec<&str> = headers.keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn each_hop_by_hop_header_alone_is_removed() {
        // Alone, so that the quick look for any of them must find each one.
        for name in [
            "connection",
            "proxy-authorization",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "keep-alive",
            "proxy-connection",
        ] {
            let mut headers = head(&[(name, "x"), ("accept", "*/*")]);
            strip_hop_by_hop(&mut headers);
            assert_eq!(names(&headers), ["accept"], "{name}");
        }
    }

    #[test]
    fn names_listed_in_connection_go_and_te_trailers_stays() {
        let mut headers = head(&[
            ("connection", "x-hop, close"),
            ("x-hop", "1"),
            ("te", "trailers"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut headers);
        assert_eq!(names(&headers), ["accept", "te"]);
        let mut headers = head(&[("te", "gzip"), ("accept", "*/*")]);
        strip_hop_by_hop(&mut headers);
        assert_eq!(names(&headers), ["accept"]);
    }

    #[test]
    fn a_head_without_any_is_left_as_it_was() {
        let mut headers = head(&[("accept", "*/*"), ("x-request-id", "1"), ("te", "trailers")]);
        let before = headers.clone();
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers, before);
    }
}
