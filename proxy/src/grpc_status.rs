//! gRPC answers by `grpc-status`: an HTTP 200 can carry INTERNAL, so a service's success
//! rate needs the gRPC status too. Counted from a trailers-only answer's headers, or
//! from the trailers at the end of the body (read as the body streams through, with no
//! buffering); an answer that ends without a status is not counted.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use http::HeaderMap;

/// The gRPC status codes, by number.
const NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// One service's gRPC answers, one counter per status (any other number counts as
/// UNKNOWN, as gRPC clients read it).
#[derive(Debug, Default)]
pub(crate) struct GrpcCounts([AtomicU64; NAMES.len()]);

impl GrpcCounts {
    /// Counts the status in `headers` (response headers of a trailers-only answer, or
    /// trailers); returns whether there was one.
    pub(crate) fn record(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get("grpc-status") else {
            return false;
        };
        let code = value
            .to_str()
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|code| *code < NAMES.len())
            .unwrap_or(2);
        self.0[code].fetch_add(1, Relaxed);
        true
    }

    /// The non-zero counts, by status name.
    pub(crate) fn counts(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        NAMES
            .iter()
            .zip(&self.0)
            .map(|(name, count)| (*name, count.load(Relaxed)))
            .filter(|(_, count)| *count > 0)
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn statuses_are_counted_by_name_and_strange_ones_as_unknown() {
        let counts = GrpcCounts::default();
        let status = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert("grpc-status", HeaderValue::from_static(value));
            headers
        };
        assert!(counts.record(&status("0")));
        assert!(counts.record(&status("13")));
        assert!(counts.record(&status("13")));
        assert!(counts.record(&status("99")));
        assert!(counts.record(&status("x")));
        assert!(!counts.record(&HeaderMap::new()));
        let seen: Vec<_> = counts.counts().collect();
        assert_eq!(seen, [("OK", 1), ("UNKNOWN", 2), ("INTERNAL", 2)]);
    }
}
