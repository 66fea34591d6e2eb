//! Watches HTTP/1 request heads as their bytes arrive, for what hyper's parser normalises
//! away before a request reaches us. A head with both `Content-Length` and
//! `Transfer-Encoding` (RFC 9112 §6.3, the classic request-smuggling shape) reaches the
//! service with the `Content-Length` removed, so only the wire can tell. hyper does close
//! such a connection after answering; we refuse the request itself, as Envoy does.
//!
//! The scanner follows message framing (a fixed length, or chunks) to find each head, and
//! numbers the heads so that the service can tell which request was the bad one when
//! requests are pipelined. It stops watching, for good, at anything it cannot frame: an
//! HTTP/2 preface, an upgrade or `CONNECT`, a line longer than a head may be. hyper rejects
//! what is malformed itself; what follows an upgrade is no longer HTTP/1.

use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Which heads had both `Content-Length` and `Transfer-Encoding`: shared by the scanner
/// (in the connection's reads) and the service (per request), on one connection.
#[derive(Debug, Default)]
pub(crate) struct HeadLedger {
    /// The ordinal (from 1) of the first head with both; 0 for none. hyper closes the
    /// connection after such a request, so there is never a second.
    both_lengths: AtomicU32,
}

impl HeadLedger {
    /// Whether the `ordinal`-th request head on the connection had both length headers.
    pub(crate) fn had_both_lengths(&self, ordinal: u32) -> bool {
        ordinal != 0 && self.both_lengths.load(Ordering::Relaxed) == ordinal
    }
}

/// Where the scanner is in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// In a head, at the start of a line.
    LineStart,
    /// In a head, inside a line that began with `kind`.
    InLine(Line),
    /// In a fixed-length body: bytes left.
    Body(u64),
    /// In a chunked body, reading a chunk-size line.
    ChunkSize {
        size: u64,
        digits: u8,
        in_extension: bool,
    },
    /// In a chunk's data: bytes left, then the CRLF that ends it.
    ChunkData(u64),
    /// After a chunk's data, up to the end of its line.
    ChunkEnd,
    /// In the trailer section of a chunked body, at the start of a line.
    TrailerLineStart,
    /// In a trailer line.
    TrailerLine,
    /// No longer watching (HTTP/2, an upgrade, or something it cannot frame).
    Off,
}

/// What the current head line is, as far as framing goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// The request line; `connect` once it is seen to start with `CONNECT `.
    Request,
    /// A header line, its name still being read (`len` bytes of it so far).
    Name {
        len: u8,
    },
    ContentLength {
        value: u64,
        digits: u8,
    },
    TransferEncoding,
    /// Any header whose value framing ignores; `upgrade` for `Upgrade`.
    Other {
        upgrade: bool,
    },
}

impl Line {
    /// Whether the rest of the line, `len` bytes in, can be skipped unread: a header
    /// whose value framing ignores, or a request line past its method.
    fn rest_is_opaque(self, len: u32) -> bool {
        match self {
            Line::Other { .. } | Line::TransferEncoding => true,
            Line::Request => len >= 8,
            Line::Name { .. } | Line::ContentLength { .. } => false,
        }
    }
}

/// The longest head line watched; a longer one stops the scanner (hyper bounds heads).
const MAX_LINE: u32 = 64 * 1024;

/// The scanner's state over one connection.
#[derive(Debug)]
pub(crate) struct HeadScanner {
    framing: Framing,
    /// The head being read: its ordinal, and what it said so far.
    ordinal: u32,
    saw_request_line: bool,
    content_length: Option<u64>,
    transfer_encoding: bool,
    upgrade: bool,
    connect: bool,
    /// The current line: its length, and the header name's bytes (lower-cased) so far.
    line_len: u32,
    name: [u8; 17],
}

/// Header names framing cares about, lower-case.
const CONTENT_LENGTH: &[u8] = b"content-length";
const TRANSFER_ENCODING: &[u8] = b"transfer-encoding";
const UPGRADE: &[u8] = b"upgrade";

impl Default for HeadScanner {
    fn default() -> Self {
        HeadScanner {
            framing: Framing::LineStart,
            ordinal: 0,
            saw_request_line: false,
            content_length: None,
            transfer_encoding: false,
            upgrade: false,
            connect: false,
            line_len: 0,
            name: [0; 17],
        }
    }
}

impl HeadScanner {
    /// Takes in the next bytes the client sent; records a head with both lengths.
    pub(crate) fn feed(&mut self, mut bytes: &[u8], ledger: &HeadLedger) {
        while !bytes.is_empty() {
            match self.framing {
                Framing::Off => return,
                Framing::Body(left) => {
                    let take = left.min(bytes.len() as u64);
                    bytes = &bytes[take as usize..];
                    self.framing = match left - take {
                        0 => Framing::LineStart,
                        rest => Framing::Body(rest),
                    };
                }
                Framing::ChunkData(left) => {
                    let take = left.min(bytes.len() as u64);
                    bytes = &bytes[take as usize..];
                    self.framing = match left - take {
                        0 => Framing::ChunkEnd,
                        rest => Framing::ChunkData(rest),
                    };
                }
                Framing::InLine(line) if line.rest_is_opaque(self.line_len) => {
                    // Nothing more in this line matters: skip to its end at once.
                    match bytes.iter().position(|&b| b == b'\n') {
                        Some(at) => {
                            self.line_len += at as u32;
                            self.end_line(line);
                            self.framing = Framing::LineStart;
                            bytes = &bytes[at + 1..];
                        }
                        None => {
                            self.line_len += bytes.len() as u32;
                            if self.line_len > MAX_LINE {
                                self.framing = Framing::Off;
                            }
                            return;
                        }
                    }
                }
                _ => {
                    self.byte(bytes[0], ledger);
                    bytes = &bytes[1..];
                }
            }
        }
    }

    fn byte(&mut self, byte: u8, ledger: &HeadLedger) {
        self.framing = match self.framing {
            Framing::LineStart => self.line_start(byte, ledger),
            Framing::InLine(line) => self.in_line(line, byte),
            Framing::ChunkSize {
                size,
                digits,
                in_extension,
            } => chunk_size(size, digits, in_extension, byte),
            Framing::ChunkEnd => match byte {
                b'\n' => Framing::ChunkSize {
                    size: 0,
                    digits: 0,
                    in_extension: false,
                },
                _ => Framing::ChunkEnd,
            },
            Framing::TrailerLineStart => match byte {
                b'\r' => Framing::TrailerLineStart,
                b'\n' => Framing::LineStart,
                _ => Framing::TrailerLine,
            },
            Framing::TrailerLine => match byte {
                b'\n' => Framing::TrailerLineStart,
                _ => Framing::TrailerLine,
            },
            framing => framing,
        };
    }

    fn line_start(&mut self, byte: u8, ledger: &HeadLedger) -> Framing {
        match byte {
            // A bare CR is part of the line end; empty lines before a request are allowed.
            b'\r' => Framing::LineStart,
            b'\n' if !self.saw_request_line => Framing::LineStart,
            b'\n' => self.end_of_head(ledger),
            _ if !self.saw_request_line => {
                self.saw_request_line = true;
                self.ordinal += 1;
                self.line_len = 1;
                self.name[0] = byte;
                Framing::InLine(Line::Request)
            }
            _ => {
                self.line_len = 1;
                self.name[0] = byte.to_ascii_lowercase();
                Framing::InLine(Line::Name { len: 1 })
            }
        }
    }

    fn in_line(&mut self, line: Line, byte: u8) -> Framing {
        if byte == b'\n' {
            self.end_line(line);
            return Framing::LineStart;
        }
        self.line_len += 1;
        if self.line_len > MAX_LINE {
            return Framing::Off;
        }
        let next = match line {
            Line::Request => {
                // The method is the line's first word; `name` holds its first bytes.
                let at = self.line_len as usize - 1;
                if at < 8 {
                    self.name[at] = byte;
                }
                if at == 7 && &self.name[..8] == b"CONNECT " {
                    self.connect = true;
                }
                if at == 2 && &self.name[..3] == b"PRI" {
                    // The HTTP/2 connection preface: hyper switches to HTTP/2.
                    return Framing::Off;
                }
                Line::Request
            }
            Line::Name { len } if byte == b':' => self.header_kind(len),
            Line::Name { len } => {
                if (len as usize) < self.name.len() {
                    self.name[len as usize] = byte.to_ascii_lowercase();
                }
                Line::Name {
                    len: len.saturating_add(1),
                }
            }
            Line::ContentLength { value, digits } => match byte {
                b'0'..=b'9' if digits < 19 => Line::ContentLength {
                    value: value * 10 + u64::from(byte - b'0'),
                    digits: digits + 1,
                },
                // Whitespace around the value; anything else hyper refuses itself.
                _ => Line::ContentLength { value, digits },
            },
            other => other,
        };
        Framing::InLine(next)
    }

    fn header_kind(&self, len: u8) -> Line {
        let name = &self.name[..(len as usize).min(self.name.len())];
        if usize::from(len) > self.name.len() {
            Line::Other { upgrade: false }
        } else if name == CONTENT_LENGTH {
            Line::ContentLength {
                value: 0,
                digits: 0,
            }
        } else if name == TRANSFER_ENCODING {
            Line::TransferEncoding
        } else {
            Line::Other {
                upgrade: name == UPGRADE,
            }
        }
    }

    fn end_line(&mut self, line: Line) {
        match line {
            Line::ContentLength { value, .. } => self.content_length = Some(value),
            Line::TransferEncoding => self.transfer_encoding = true,
            Line::Other { upgrade: true } => self.upgrade = true,
            _ => {}
        }
    }

    /// The empty line after the headers: record the head, then skip its body.
    fn end_of_head(&mut self, ledger: &HeadLedger) -> Framing {
        if self.content_length.is_some() && self.transfer_encoding {
            let _ = ledger.both_lengths.compare_exchange(
                0,
                self.ordinal,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        let framing = if self.upgrade || self.connect {
            Framing::Off
        } else if self.transfer_encoding {
            // hyper takes the body as chunked (and refuses any other final coding).
            Framing::ChunkSize {
                size: 0,
                digits: 0,
                in_extension: false,
            }
        } else {
            match self.content_length {
                Some(0) | None => Framing::LineStart,
                Some(length) => Framing::Body(length),
            }
        };
        self.saw_request_line = false;
        self.content_length = None;
        self.transfer_encoding = false;
        self.upgrade = false;
        self.connect = false;
        framing
    }
}

/// One byte of a chunk-size line: hex digits, then an optional extension, then LF.
fn chunk_size(size: u64, digits: u8, in_extension: bool, byte: u8) -> Framing {
    let digit = match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    };
    match (byte, digit) {
        (b'\n', _) if digits == 0 => Framing::Off,
        (b'\n', _) if size == 0 => Framing::TrailerLineStart,
        (b'\n', _) => Framing::ChunkData(size),
        (_, Some(d)) if !in_extension => {
            if digits >= 15 {
                return Framing::Off;
            }
            Framing::ChunkSize {
                size: size * 16 + u64::from(d),
                digits: digits + 1,
                in_extension,
            }
        }
        _ => Framing::ChunkSize {
            size,
            digits,
            in_extension: true,
        },
    }
}

/// A client connection whose reads go through a [`HeadScanner`].
pub(crate) struct WireHeads<I> {
    io: I,
    scanner: HeadScanner,
    ledger: std::sync::Arc<HeadLedger>,
}

impl<I> WireHeads<I> {
    pub(crate) fn new(io: I, ledger: std::sync::Arc<HeadLedger>) -> Self {
        WireHeads {
            io,
            scanner: HeadScanner::default(),
            ledger,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for WireHeads<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if this.scanner.framing != Framing::Off {
            this.scanner.feed(&buf.filled()[before..], &this.ledger);
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for WireHeads<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ordinal of the head with both lengths, feeding `wire` in pieces of `step`.
    fn flagged(wire: &[u8], step: usize) -> u32 {
        let (mut scanner, ledger) = (HeadScanner::default(), HeadLedger::default());
        for piece in wire.chunks(step) {
            scanner.feed(piece, &ledger);
        }
        ledger.both_lengths.load(Ordering::Relaxed)
    }

    fn every_split(wire: &[u8]) -> Vec<u32> {
        (1..=wire.len()).map(|step| flagged(wire, step)).collect()
    }

    #[test]
    fn finds_both_lengths_in_either_order_and_any_case() {
        for wire in [
            &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\nCONTENT-LENGTH:4\r\nhost: a\r\n\r\n0\r\n\r\n",
        ] {
            assert!(every_split(wire).iter().all(|&n| n == 1), "{wire:?}");
        }
    }

    #[test]
    fn numbers_pipelined_heads_across_bodies() {
        let wire = b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 30\r\n\r\n\
            Content-Length: 1\r\nTransfer-\r\n\
            POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
            5;ext=1\r\nhello\r\n1A\r\nContent-Length: 9\r\n\r\nabcde\r\n0\r\nX-Trailer: y\r\n\r\n\
            GET /c HTTP/1.1\r\nHost: a\r\n\r\n\
            POST /d HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(every_split(wire).iter().all(|&n| n == 4));
    }

    #[test]
    fn plain_requests_are_not_flagged() {
        let wire = b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\n\n";
        assert!(every_split(wire).iter().all(|&n| n == 0));
    }

    #[test]
    fn stops_at_http2_and_upgrades() {
        let preface =
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nContent-Length: 1\r\nTransfer-Encoding: x\r\n\r\n";
        assert_eq!(flagged(preface, 5), 0);
        let upgraded = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n\
            POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(flagged(upgraded, 7), 0);
        let connect = b"CONNECT a:1 HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(flagged(connect, 3), 0);
    }

    #[test]
    fn a_chunk_size_without_digits_stops_the_scanner() {
        let wire = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\
            POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(flagged(wire, 4), 0);
    }
}
