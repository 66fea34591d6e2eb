//! The first bytes of a connection: the opaque TCP header a peer sidecar sends
//! (docs/opaque-tcp.md) and the protocol detection of redirected connections. Bytes
//! arrive in packets of any size; neither the decision nor the bytes handed on may
//! depend on how they were cut, and not a byte of the app's may be lost or eaten.

#![no_main]

use std::io;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use outrigger_proxy::fuzzing::{Prefixed, detect, read_opaque_header, write_opaque_header};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
});

/// Longer than any input takes: in-memory reads never wait, so it never fires.
const DETECT_TIMEOUT: Duration = Duration::from_secs(3600);

fuzz_target!(|data: &[u8]| {
    let Some((&size, bytes)) = data.split_first() else {
        return;
    };
    let packet = usize::from(size % 32) + 1;
    RUNTIME.block_on(async {
        header(bytes, packet).await;
        detection(bytes, packet).await;
    });
});

/// The header is exactly three bytes: version 1 and a big-endian port.
async fn header(bytes: &[u8], packet: usize) {
    let mut io = Packets::new(bytes, packet);
    match read_opaque_header(&mut io).await {
        Ok(port) => {
            assert_eq!(bytes[0], 1, "only version 1 is read");
            assert_eq!(port, u16::from_be_bytes([bytes[1], bytes[2]]));
            let mut rest = Vec::new();
            io.read_to_end(&mut rest).await.expect("in memory");
            assert_eq!(rest, &bytes[3..], "the app's bytes are untouched");
            let mut written = Vec::new();
            write_opaque_header(&mut written, port)
                .await
                .expect("in memory");
            assert_eq!(written, &bytes[..3]);
        }
        Err(_) => assert!(bytes.len() < 3 || bytes[0] != 1, "refused {bytes:?}"),
    }
}

/// The same decision in one packet or many, and every byte handed on in order.
async fn detection(bytes: &[u8], packet: usize) {
    let mut io = Packets::new(bytes, packet);
    let (decided, read) = detect(&mut io, DETECT_TIMEOUT).await.expect("in memory");
    let (at_once, _) = detect(&mut Packets::new(bytes, usize::MAX), DETECT_TIMEOUT)
        .await
        .expect("in memory");
    assert_eq!(decided, at_once, "packets of {packet} bytes");
    let mut handed_on = Vec::new();
    Prefixed::new(read, io)
        .read_to_end(&mut handed_on)
        .await
        .expect("in memory");
    assert_eq!(handed_on, bytes);
}

/// A peer that sends `bytes` in packets of at most `packet` bytes, then closes.
struct Packets<'a> {
    bytes: &'a [u8],
    packet: usize,
}

impl<'a> Packets<'a> {
    fn new(bytes: &'a [u8], packet: usize) -> Self {
        Packets { bytes, packet }
    }
}

impl AsyncRead for Packets<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.packet.min(buf.remaining()).min(self.bytes.len());
        let (sent, rest) = self.bytes.split_at(n);
        buf.put_slice(sent);
        self.bytes = rest;
        Poll::Ready(Ok(()))
    }
}
