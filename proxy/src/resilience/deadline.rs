//! Deadline propagation. The caller's sidecar tells the next hop how much time is left
//! (`outrigger-deadline-ms`, and `grpc-timeout` for gRPC); the next hop's sidecar never
//! waits longer than that on its own outbound calls.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};

pub(crate) const DEADLINE_HEADER: &str = "outrigger-deadline-ms";
pub(crate) const GRPC_TIMEOUT: &str = "grpc-timeout";

/// The time budget a request arrived with: the smaller of the two headers.
pub(crate) fn incoming_budget(headers: &HeaderMap) -> Option<Duration> {
    let ours = headers
        .get(DEADLINE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_millis);
    let grpc = headers
        .get(GRPC_TIMEOUT)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout);
    match (ours, grpc) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Writes the remaining budget for the next hop. `grpc-timeout` is rewritten only when the
/// request already carries one (it is a gRPC call).
pub(crate) fn set_budget(headers: &mut HeaderMap, remaining: Duration) {
    let ms = remaining.as_millis().min(u128::from(u64::MAX)) as u64;
    headers.insert(DEADLINE_HEADER, HeaderValue::from(ms));
    if headers.contains_key(GRPC_TIMEOUT) {
        // gRPC allows at most 8 digits; milliseconds cover 27 hours.
        let value = format!("{}m", ms.min(99_999_999));
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(GRPC_TIMEOUT, value);
        }
    }
}

/// `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n).
pub(crate) fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    // HTTP's optional whitespace is spaces and tabs, not Unicode's.
    let value = value.trim_ascii();
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    // The unit is one ASCII letter: a value ending in another character is refused here,
    // not split inside it (the header is ASCII, but this function cannot know that).
    let (digits, unit) = value.split_at_checked(value.len() - 1)?;
    // `u64::from_str` would also take a sign ("+5S"); gRPC allows digits only.
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_tighter_of_both_headers() {
        let mut headers = HeaderMap::new();
        assert_eq!(incoming_budget(&headers), None);
        headers.insert(DEADLINE_HEADER, "1500".parse().unwrap());
        assert_eq!(incoming_budget(&headers), Some(Duration::from_millis(1500)));
        headers.insert(GRPC_TIMEOUT, "1S".parse().unwrap());
        assert_eq!(incoming_budget(&headers), Some(Duration::from_secs(1)));
        headers.insert(DEADLINE_HEADER, "junk".parse().unwrap());
        assert_eq!(incoming_budget(&headers), Some(Duration::from_secs(1)));
    }

    #[test]
    fn grpc_timeout_units() {
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("5u"), Some(Duration::from_micros(5)));
        assert_eq!(parse_grpc_timeout("123456789S"), None, "at most 8 digits");
        assert_eq!(parse_grpc_timeout("10x"), None);
        assert_eq!(parse_grpc_timeout("m"), None);
    }

    /// Found by the `durations` fuzz target: a value ending in a multi-byte character
    /// was split inside it, which panicked.
    #[test]
    fn grpc_timeout_refuses_non_ascii_and_signs() {
        assert_eq!(parse_grpc_timeout("0^\u{4d2}\u{4d2}"), None);
        assert_eq!(parse_grpc_timeout("5\u{e9}"), None);
        assert_eq!(parse_grpc_timeout("+5S"), None, "digits only");
        assert_eq!(
            parse_grpc_timeout(" 6m\u{a0}"),
            None,
            "no Unicode whitespace"
        );
        assert_eq!(parse_grpc_timeout(" 6m\t"), Some(Duration::from_millis(6)));
    }

    #[test]
    fn writes_the_budget_for_the_next_hop() {
        let mut headers = HeaderMap::new();
        set_budget(&mut headers, Duration::from_millis(250));
        assert_eq!(headers[DEADLINE_HEADER], "250");
        assert!(!headers.contains_key(GRPC_TIMEOUT), "not a gRPC call");
        headers.insert(GRPC_TIMEOUT, "10S".parse().unwrap());
        set_budget(&mut headers, Duration::from_millis(250));
        assert_eq!(headers[GRPC_TIMEOUT], "250m");
    }
}
