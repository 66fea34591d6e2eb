//! The checks every request passes before the proxy does anything with it (RFC 9112
//! §3.2, §3.2.3, §6.3), and what a connection's error says about a limit it hit.
//! A refused HTTP/1 request is answered 400 `bad-request` and its connection closed: after
//! an ambiguous request, nothing later on the same connection can be trusted.

use http::header::{CONNECTION, HOST, TRANSFER_ENCODING};
use http::{HeaderValue, Method, Request, Response, Version};

use super::refusal::Refusal;
use super::wire_heads::HeadLedger;
use crate::body::ProxyBody;
use crate::error::{ErrorCode, ProxyError};
use crate::metrics::Direction;

/// A request refused before anything was done with it.
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) reason: Refusal,
    message: &'static str,
    /// An HTTP/1 connection is closed after the answer.
    close: bool,
}

impl Refused {
    /// The answer: 400 `bad-request`, saying what was wrong.
    pub(crate) fn response(&self) -> Response<ProxyBody> {
        let mut response = ProxyError::new(ErrorCode::BadRequest, self.message).into_response("");
        if self.close {
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// `Err` when the request must not be served. `ordinal` is the request's number on its
/// connection, from 1.
pub(super) fn check<B>(
    req: &Request<B>,
    direction: Direction,
    ordinal: u32,
    heads: &HeadLedger,
) -> Result<(), Refused> {
    let http1 = req.version() <= Version::HTTP_11;
    if http1 {
        // hyper drops the Content-Length of such a head; only the wire knew both.
        if heads.had_both_lengths(ordinal) && req.headers().contains_key(TRANSFER_ENCODING) {
            return Err(refuse(
                Refusal::BothLengths,
                "a request must not carry both Content-Length and Transfer-Encoding",
                http1,
            ));
        }
        if req.headers().get_all(HOST).iter().nth(1).is_some() {
            return Err(refuse(
                Refusal::DuplicateHost,
                "a request must carry one Host header",
                http1,
            ));
        }
    }
    if let Some(problem) = target_problem(req, direction) {
        return Err(refuse(Refusal::BadTarget, problem, http1));
    }
    Ok(())
}

/// What is wrong with the request target, if anything.
fn target_problem<B>(req: &Request<B>, direction: Direction) -> Option<&'static str> {
    let uri = req.uri();
    if req.method() == Method::CONNECT {
        // An extended CONNECT (RFC 8441) from a peer sidecar carries a WebSocket; a plain
        // one asks for a tunnel the mesh does not offer (interception carries raw TCP).
        let extended = req.extensions().get::<hyper::ext::Protocol>().is_some();
        return (!extended || direction == Direction::Outbound)
            .then_some("CONNECT tunnels are not proxied; TCP to other ports is intercepted");
    }
    if uri.path() == "*" && uri.authority().is_none() {
        return (req.method() != Method::OPTIONS).then_some("only OPTIONS may target `*`");
    }
    match uri.scheme_str() {
        None | Some("http") | Some("https") => None,
        Some(_) => Some("the request target's scheme must be http or https"),
    }
}

fn refuse(reason: Refusal, message: &'static str, http1: bool) -> Refused {
    Refused {
        reason,
        message,
        close: http1,
    }
}

/// The limit a connection's error says it hit, if any: hyper's header-read timeout and
/// head limits (hyper answered 408-less close, 431 or 400 itself), or h2's GOAWAY.
pub(super) fn refusal_of(error: &(dyn std::error::Error + 'static)) -> Option<Refusal> {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(error) = error.downcast_ref::<hyper::Error>() {
            if error.is_timeout() {
                return Some(Refusal::HeaderReadTimeout);
            }
            if error.is_parse_too_large() {
                return Some(Refusal::HeadersTooLarge);
            }
            if error.is_parse() {
                return Some(Refusal::Malformed);
            }
        }
        if let Some(error) = error.downcast_ref::<h2::Error>()
            && error.is_go_away()
            && error.is_library()
        {
            return match error.reason() {
                Some(h2::Reason::ENHANCE_YOUR_CALM) => Some(Refusal::Http2Abuse),
                Some(h2::Reason::NO_ERROR) | None => None,
                Some(_) => Some(Refusal::Http2Protocol),
            };
        }
        cause = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(req: &Request<()>, direction: Direction) -> Result<(), Refusal> {
        check(req, direction, 1, &HeadLedger::default()).map_err(|refused| {
            assert_eq!(refused.response().status(), 400);
            refused.reason
        })
    }

    #[test]
    fn ordinary_requests_pass() {
        for req in [
            Request::get("/a?b=c").header(HOST, "x").body(()).unwrap(),
            Request::get("http://x/a").body(()).unwrap(),
            Request::options("*").body(()).unwrap(),
        ] {
            assert_eq!(checked(&req, Direction::Outbound), Ok(()), "{req:?}");
        }
    }

    #[test]
    fn refuses_ambiguous_or_foreign_targets() {
        let two_hosts = Request::get("/")
            .header(HOST, "a")
            .header(HOST, "b")
            .body(())
            .unwrap();
        assert_eq!(
            checked(&two_hosts, Direction::Inbound),
            Err(Refusal::DuplicateHost)
        );
        let star = Request::get("*").body(()).unwrap();
        assert_eq!(checked(&star, Direction::Outbound), Err(Refusal::BadTarget));
        let ftp = Request::get("ftp://x/a").body(()).unwrap();
        assert_eq!(checked(&ftp, Direction::Outbound), Err(Refusal::BadTarget));
        let connect = Request::connect("x:443").body(()).unwrap();
        assert_eq!(
            checked(&connect, Direction::Outbound),
            Err(Refusal::BadTarget)
        );
    }

    #[test]
    fn an_extended_connect_passes_inbound_only() {
        let mut websocket = Request::connect("http://x/chat").body(()).unwrap();
        *websocket.version_mut() = Version::HTTP_2;
        websocket
            .extensions_mut()
            .insert(hyper::ext::Protocol::from_static("websocket"));
        assert_eq!(checked(&websocket, Direction::Inbound), Ok(()));
        assert_eq!(
            checked(&websocket, Direction::Outbound),
            Err(Refusal::BadTarget)
        );
    }

    #[test]
    fn the_request_with_both_lengths_is_refused_and_closes() {
        let req = Request::post("/")
            .header(TRANSFER_ENCODING, "chunked")
            .body(())
            .unwrap();
        let heads = HeadLedger::default();
        let mut scanner = super::super::wire_heads::HeadScanner::default();
        scanner.feed(
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            &heads,
        );
        let refused = check(&req, Direction::Outbound, 1, &heads).unwrap_err();
        assert_eq!(refused.reason, Refusal::BothLengths);
        assert_eq!(refused.response().headers()[CONNECTION], "close");
        // Another request on the connection is not taken for it.
        assert!(check(&req, Direction::Outbound, 2, &heads).is_ok());
    }
}
