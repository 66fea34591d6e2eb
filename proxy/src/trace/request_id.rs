//! `x-request-id`: passed on unchanged when the request has one, else made here, so that
//! every hop of a request logs the same id (as Envoy and nginx do).

use http::{HeaderMap, HeaderName, HeaderValue};

pub(crate) const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Sets `x-request-id` when the request has none (or an empty one).
pub(crate) fn ensure(headers: &mut HeaderMap) {
    match headers.get(&REQUEST_ID_HEADER) {
        Some(id) if !id.is_empty() => {}
        _ => {
            headers.insert(REQUEST_ID_HEADER, new_id());
        }
    }
}

/// A random id in the form of a version 4 UUID, the form log tools expect. Unique, not
/// secret: fastrand is enough.
fn new_id() -> HeaderValue {
    let bits = fastrand::u128(..);
    // Version 4 and the RFC 4122 variant, as a UUID parser checks.
    let bits = (bits & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    let mut hex = [0u8; 32];
    super::context::write_hex(&bits.to_be_bytes(), &mut hex);
    // 8-4-4-4-12, written in place: this runs for every request that comes without one.
    let mut text = [b'-'; 36];
    for (from, to, len) in [(0, 0, 8), (8, 9, 4), (12, 14, 4), (16, 19, 4), (20, 24, 12)] {
        text[to..to + len].copy_from_slice(&hex[from..from + len]);
    }
    let mut value =
        HeaderValue::from_bytes(&text).expect("hex digits and dashes are a valid header value");
    super::context::never_indexed(&mut value);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_id_is_never_indexed_by_hpack() {
        let mut headers = HeaderMap::new();
        ensure(&mut headers);
        assert!(headers[&REQUEST_ID_HEADER].is_sensitive());
    }

    #[test]
    fn makes_an_id_when_absent_or_empty() {
        let mut headers = HeaderMap::new();
        ensure(&mut headers);
        let id = headers[&REQUEST_ID_HEADER].to_str().unwrap().to_string();
        let groups: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{id}");
        assert_eq!(&id[14..15], "4", "version 4: {id}");
        assert!(
            matches!(&id[19..20], "8" | "9" | "a" | "b"),
            "variant: {id}"
        );

        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static(""));
        ensure(&mut headers);
        assert_eq!(headers[&REQUEST_ID_HEADER].len(), 36);

        let mut other = HeaderMap::new();
        ensure(&mut other);
        assert_ne!(other[&REQUEST_ID_HEADER], id.as_str());
    }

    #[test]
    fn passes_an_id_on_unchanged() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("abc 123"));
        ensure(&mut headers);
        assert_eq!(headers[&REQUEST_ID_HEADER], "abc 123");
        assert_eq!(headers.get_all(&REQUEST_ID_HEADER).iter().count(), 1);
    }
}
