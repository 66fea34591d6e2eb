//! The watch stream as a proxy reads it: bytes cut into frames anywhere, split into
//! lines, decoded and applied to the mesh state. Whatever arrives, the proxy must not
//! panic, and how the bytes were framed must never change what it ends up holding.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use outrigger_proxy::fuzzing::WatchedMesh;

/// A trust anchor for the proxy to start with (the stream may replace it).
static ANCHOR: LazyLock<String> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("temp dir");
    let paths = outrigger_certs::init_ca(dir.path(), "cluster.local").expect("CA");
    std::fs::read_to_string(paths.trust_anchor()).expect("anchor")
});

fuzz_target!(|data: &[u8]| {
    // The first byte chooses the frame size; the rest is the stream.
    let Some((&size, stream)) = data.split_first() else {
        return;
    };
    let frame = usize::from(size % 64) + 1;
    let mut whole = WatchedMesh::new(&ANCHOR, "cluster.local").expect("proxy");
    let mut framed = WatchedMesh::new(&ANCHOR, "cluster.local").expect("proxy");
    let in_one = whole.push(stream);
    let in_frames = stream
        .chunks(frame)
        .try_for_each(|chunk| framed.push(chunk));
    assert_eq!(in_one, in_frames, "frames of {frame} bytes");
    assert_eq!(whole.version(), framed.version());
    assert_eq!(whole.services(), framed.services());
});
