//! W3C Trace Context (`traceparent`, version 00): parsed strictly, formatted, and a new
//! span made for each hop. <https://www.w3.org/TR/trace-context/>

use http::HeaderValue;

/// `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`.
const VERSION_00_LEN: usize = 55;

/// The `sampled` bit of the trace flags.
const SAMPLED: u8 = 0x01;

/// Where a request stands in its trace: the trace, one span of it, and the flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
}

impl TraceContext {
    /// A `traceparent` value, or `None` if it is not one this proxy may continue.
    ///
    /// Version 00 must be exactly 55 characters. A later version may be longer, with a
    /// `-` after the first four fields (the spec's rule for forward compatibility: we
    /// read the fields we know). Version `ff`, upper-case hex and all-zero ids are
    /// invalid.
    pub(crate) fn parse(value: &[u8]) -> Option<TraceContext> {
        if value.len() < VERSION_00_LEN {
            return None;
        }
        let version = hex_byte(&value[0..2])?;
        match version {
            0x00 if value.len() != VERSION_00_LEN => return None,
            0xff => return None,
            _ if value.len() > VERSION_00_LEN && value[VERSION_00_LEN] != b'-' => return None,
            _ => {}
        }
        if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let mut trace_id = [0u8; 16];
        for (i, byte) in trace_id.iter_mut().enumerate() {
            *byte = hex_byte(&value[3 + 2 * i..5 + 2 * i])?;
        }
        let mut span_id = [0u8; 8];
        for (i, byte) in span_id.iter_mut().enumerate() {
            *byte = hex_byte(&value[36 + 2 * i..38 + 2 * i])?;
        }
        let flags = hex_byte(&value[53..55])?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceContext {
            trace_id,
            span_id,
            // Only version 00's flags are known: a later version's other bits mean
            // nothing to us, and we pass the trace on as version 00.
            flags: if version == 0 { flags } else { flags & SAMPLED },
        })
    }

    /// The start of a new trace, sampled: a mesh that starts a trace records it (a
    /// collector can still sample its spans).
    pub(crate) fn new_root() -> TraceContext {
        TraceContext {
            trace_id: nonzero_u128().to_be_bytes(),
            span_id: nonzero_u64().to_be_bytes(),
            flags: SAMPLED,
        }
    }

    /// The span this hop makes, in the same trace as `self`, whose span is its parent.
    pub(crate) fn child(&self) -> TraceContext {
        TraceContext {
            span_id: nonzero_u64().to_be_bytes(),
            ..*self
        }
    }

    /// Whether the caller asked for this trace to be recorded.
    pub(crate) fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// The `traceparent` value, always version 00.
    pub(crate) fn header_value(&self) -> HeaderValue {
        let mut text = [0u8; VERSION_00_LEN];
        text[..3].copy_from_slice(b"00-");
        write_hex(&self.trace_id, &mut text[3..35]);
        text[35] = b'-';
        write_hex(&self.span_id, &mut text[36..52]);
        text[52] = b'-';
        write_hex(&[self.flags], &mut text[53..55]);
        let mut value = HeaderValue::from_bytes(&text)
            .expect("lower-case hex and dashes are a valid header value");
        never_indexed(&mut value);
        value
    }
}

/// The lower-case hex of `bytes`, as the OTLP JSON encoding and the access log want it.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut text = vec![0u8; bytes.len() * 2];
    write_hex(bytes, &mut text);
    String::from_utf8(text).expect("hex digits are UTF-8")
}

/// Writes the lower-case hex of `bytes` into `out` (twice as long).
pub(super) fn write_hex(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
}

/// Two lower-case hex digits; upper case is invalid in `traceparent`.
fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some(digit(pair[0])? << 4 | digit(pair[1])?)
}

/// Ids need only be unique, not secret: fastrand's per-thread generator is enough, and
/// an id of zero is invalid, so it is drawn again.
fn nonzero_u128() -> u128 {
    loop {
        let id = fastrand::u128(..);
        if id != 0 {
            return id;
        }
    }
}

fn nonzero_u64() -> u64 {
    loop {
        let id = fastrand::u64(..);
        if id != 0 {
            return id;
        }
    }
}

/// Marks a value that is new on every request (a span id, a request id) as one HPACK must
/// not index: entered in the HTTP/2 connection's header table, it could never be reused,
/// would cost an insertion on both ends, and would push out entries that are reused
/// (`user-agent`, `accept`), which then go out as literals again. h2 writes a value
/// marked sensitive as "never indexed" (RFC 7541 §6.2.3), its only way to skip the table.
/// Nothing else reads the mark but `Debug`, which hides the value.
pub(crate) fn never_indexed(value: &mut HeaderValue) {
    value.set_sensitive(true);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_is_never_indexed_by_hpack() {
        assert!(TraceContext::new_root().header_value().is_sensitive());
    }

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_a_valid_version_00() {
        let context = TraceContext::parse(VALID.as_bytes()).unwrap();
        assert_eq!(hex(&context.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&context.span_id), "00f067aa0ba902b7");
        assert_eq!(context.flags, 1);
        assert!(context.sampled());
        assert_eq!(context.header_value(), VALID);
    }

    #[test]
    fn keeps_unsampled_flags() {
        let unsampled = VALID.replace("-01", "-00");
        let context = TraceContext::parse(unsampled.as_bytes()).unwrap();
        assert!(!context.sampled());
        assert_eq!(context.header_value(), unsampled.as_str());
    }

    #[test]
    fn rejects_what_the_spec_calls_invalid() {
        let cases = [
            ("", "empty"),
            (&VALID[..54], "too short"),
            (&format!("{VALID}-"), "version 00 with more fields"),
            (&VALID.replacen("00-", "ff-", 1), "version ff"),
            (&VALID.replacen("00-", "0x-", 1), "version not hex"),
            (&VALID.to_uppercase(), "upper-case hex"),
            (
                &VALID.replace("4bf92f3577b34da6", "4BF92F3577B34DA6"),
                "upper-case trace id",
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "all-zero trace id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                "all-zero span id",
            ),
            (&VALID.replace('-', "_"), "wrong separators"),
            (&VALID.replace("-01", "-0g"), "flags not hex"),
            (&VALID.replace("b7-", "b-7"), "misplaced dash"),
            (&VALID.replace("4bf9", "4bf "), "space in the trace id"),
        ];
        for (value, why) in cases {
            assert_eq!(
                TraceContext::parse(value.as_bytes()),
                None,
                "{why}: {value:?}"
            );
        }
    }

    #[test]
    fn reads_the_known_fields_of_a_later_version() {
        let later = VALID.replacen("00-", "01-", 1);
        let longer = format!("{later}-something-new");
        for value in [later.as_str(), longer.as_str()] {
            let context = TraceContext::parse(value.as_bytes()).unwrap();
            assert_eq!(hex(&context.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
            // Passed on as the version we speak.
            assert!(context.header_value().to_str().unwrap().starts_with("00-"));
        }
        let glued = format!("{later}x");
        assert_eq!(TraceContext::parse(glued.as_bytes()), None);
        // Flags a later version may define are not passed on as version 00's.
        let odd_flags = VALID.replacen("00-", "01-", 1).replace("-01", "-ff");
        assert_eq!(TraceContext::parse(odd_flags.as_bytes()).unwrap().flags, 1);
    }

    #[test]
    fn a_child_keeps_the_trace_and_flags_with_a_new_span() {
        let parent = TraceContext::parse(VALID.as_bytes()).unwrap();
        let child = parent.child();
        assert_eq!(child.trace_id, parent.trace_id);
        assert_eq!(child.flags, parent.flags);
        assert_ne!(child.span_id, parent.span_id);
        assert_ne!(child.span_id, [0; 8]);
    }

    #[test]
    fn a_new_root_is_sampled_valid_and_round_trips() {
        let root = TraceContext::new_root();
        assert!(root.sampled());
        let value = root.header_value();
        assert_eq!(value.len(), VERSION_00_LEN);
        assert_eq!(TraceContext::parse(value.as_bytes()), Some(root));
        assert_ne!(TraceContext::new_root().trace_id, root.trace_id);
    }
}
