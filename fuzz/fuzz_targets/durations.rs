//! Durations as users write them (`250ms`, `1h30m`: policies and flags) and as requests
//! carry them (`grpc-timeout`, `outrigger-deadline-ms`). What one side formats, the
//! other must parse back to the same value: the control plane formats a policy's
//! durations for the watch stream, and the proxy parses them again.

#![no_main]

use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use outrigger_api::{HumanDuration, format_duration, parse_duration};
use outrigger_proxy::fuzzing::{incoming_budget, parse_grpc_timeout, set_budget};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        human(text);
        grpc(text);
    }
    // The same bytes as a value: seconds (8 bytes) and nanoseconds (4), little-endian.
    let mut value = [0u8; 12];
    let n = data.len().min(12);
    value[..n].copy_from_slice(&data[..n]);
    let secs = u64::from_le_bytes(value[..8].try_into().expect("8 bytes"));
    let nanos = u32::from_le_bytes(value[8..].try_into().expect("4 bytes")) % 1_000_000_000;
    human_value(Duration::new(secs, nanos));
    budget(Duration::new(secs, nanos));
});

/// A duration as written in YAML: parsed, formatted, parsed again to the same value.
fn human(text: &str) {
    match parse_duration(text) {
        Ok(duration) => round_trips(duration),
        Err(error) => assert!(
            error.to_string().contains(&format!("{text:?}")),
            "the error quotes the input: {error}"
        ),
    }
}

/// Any value the control plane may hold, at the millisecond precision it is written in.
fn human_value(duration: Duration) {
    let millis = Duration::from_millis(duration.as_millis().min(u128::from(u64::MAX)) as u64);
    let whole = Duration::from_secs(duration.as_secs())
        + Duration::from_millis(u64::from(duration.subsec_millis()));
    round_trips(millis);
    round_trips(whole);
}

fn round_trips(duration: Duration) {
    let text = format_duration(duration);
    assert_eq!(parse_duration(&text), Ok(duration), "{text}");
    let json = serde_json::to_string(&HumanDuration(duration)).expect("serializes");
    let back: HumanDuration = serde_json::from_str(&json).expect(&json);
    assert_eq!(back.get(), duration, "{json}");
}

/// `grpc-timeout`: at most 8 digits and a unit; the budget read is the one the header says.
fn grpc(text: &str) {
    let parsed = parse_grpc_timeout(text);
    if parsed.is_some() {
        let value = text.trim();
        let digits = &value[..value.len() - 1];
        assert!(
            (1..=8).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()),
            "{text:?}: gRPC allows 1 to 8 ASCII digits"
        );
    }
    let Ok(value) = HeaderValue::from_str(text) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert("grpc-timeout", value);
    assert_eq!(incoming_budget(&headers), parsed, "{text:?}");
}

/// What one hop writes, the next reads: milliseconds, and at most 8 digits for gRPC.
fn budget(remaining: Duration) {
    let millis = remaining.as_millis().min(u128::from(u64::MAX)) as u64;
    let mut headers = HeaderMap::new();
    set_budget(&mut headers, remaining);
    assert_eq!(
        incoming_budget(&headers),
        Some(Duration::from_millis(millis))
    );
    headers.insert("grpc-timeout", HeaderValue::from_static("1S"));
    set_budget(&mut headers, remaining);
    let grpc = headers["grpc-timeout"].to_str().expect("ASCII");
    assert_eq!(
        parse_grpc_timeout(grpc),
        Some(Duration::from_millis(millis.min(99_999_999)))
    );
    assert_eq!(
        incoming_budget(&headers),
        Some(Duration::from_millis(millis.min(99_999_999)))
    );
}
