//! gRPC answers by `grpc-status`: an HTTP 200 can carry INTERNAL, so a service's success
//! rate needs the gRPC status too. Counted from a trailers-only answer's headers, or
//! from the trailers at the end of the body (read as the body streams through, with no
//! buffering); an answer that ends without a status is not counted.

use std::sync::OnceLock;

use http::HeaderMap;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::metrics::labels::{EdgeLabels, GrpcLabels};

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

/// One edge's gRPC answers, one counter per status (any other number counts as UNKNOWN,
/// as gRPC clients read it). A status's series appears when it is first seen; after that
/// a count is one atomic increment.
#[derive(Debug, Default)]
pub(crate) struct GrpcCounts {
    counters: [OnceLock<Counter>; NAMES.len()],
    /// Where the counters live; `None` for counts nobody renders (tests).
    family: Option<(Family<GrpcLabels, Counter>, EdgeLabels)>,
}

impl GrpcCounts {
    pub(crate) fn new(family: Family<GrpcLabels, Counter>, edge: EdgeLabels) -> Self {
        GrpcCounts {
            counters: Default::default(),
            family: Some((family, edge)),
        }
    }

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
        self.counters[code]
            .get_or_init(|| match &self.family {
                Some((family, edge)) => family.get_or_create_owned(&labels(edge, code)),
                None => Counter::default(),
            })
            .inc();
        true
    }

    /// The non-zero counts, by status name.
    pub(crate) fn counts(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        NAMES
            .iter()
            .zip(&self.counters)
            .filter_map(|(name, counter)| counter.get().map(|c| (*name, c.get())))
            .filter(|(_, count)| *count > 0)
    }

    /// Takes this edge's series off the page (its handle is gone).
    pub(crate) fn remove(&self) {
        if let Some((family, edge)) = &self.family {
            for (code, counter) in self.counters.iter().enumerate() {
                if counter.get().is_some() {
                    family.remove(&labels(edge, code));
                }
            }
        }
    }
}

fn labels(edge: &EdgeLabels, code: usize) -> GrpcLabels {
    GrpcLabels {
        edge: edge.clone(),
        grpc_status: NAMES[code],
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
