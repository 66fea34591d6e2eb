//! The `retryOn` vocabulary: which failures of a try are worth another. One type for the
//! YAML, the wire and the proxy, so that what `outrigger check` accepts is exactly what
//! the sidecar acts on.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One `retries.retryOn` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum RetryCondition {
    /// `connect-failure`: the connection could not be made (the request never left).
    ConnectFailure,
    /// `reset`: the connection or stream broke after the request was sent.
    Reset,
    /// `refused-stream`: the peer refused the stream before processing it.
    RefusedStream,
    /// `gateway-error`: 502, 503, 504, and a per-try timeout.
    GatewayError,
    /// `5xx`: any server error, and a per-try timeout.
    ServerError,
    /// `retriable-4xx`: 409 Conflict, which can be expected to succeed as is later.
    Retriable4xx,
    /// A status code, such as `"503"`.
    Status(u16),
    /// `cancelled`: a gRPC response with `grpc-status` CANCELLED (1).
    GrpcCancelled,
    /// `deadline-exceeded`: gRPC DEADLINE_EXCEEDED (4).
    GrpcDeadlineExceeded,
    /// `internal`: gRPC INTERNAL (13).
    GrpcInternal,
    /// `resource-exhausted`: gRPC RESOURCE_EXHAUSTED (8).
    GrpcResourceExhausted,
    /// `unavailable`: gRPC UNAVAILABLE (14).
    GrpcUnavailable,
}

/// The named conditions, as written in YAML.
pub const RETRY_CONDITION_NAMES: [&str; 11] = [
    "connect-failure",
    "reset",
    "refused-stream",
    "gateway-error",
    "5xx",
    "retriable-4xx",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

impl RetryCondition {
    /// The gRPC status code a gRPC condition names.
    pub fn grpc_status(self) -> Option<u16> {
        Some(match self {
            RetryCondition::GrpcCancelled => 1,
            RetryCondition::GrpcDeadlineExceeded => 4,
            RetryCondition::GrpcResourceExhausted => 8,
            RetryCondition::GrpcInternal => 13,
            RetryCondition::GrpcUnavailable => 14,
            _ => return None,
        })
    }
}

/// A `retryOn` entry that is none of the above.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownRetryCondition(pub String);

impl fmt::Display for UnknownRetryCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown condition {:?} (expected one of {}, or a status code such as \"503\")",
            self.0,
            RETRY_CONDITION_NAMES.join(", ")
        )
    }
}

impl std::error::Error for UnknownRetryCondition {}

impl FromStr for RetryCondition {
    type Err = UnknownRetryCondition;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "connect-failure" => RetryCondition::ConnectFailure,
            "reset" => RetryCondition::Reset,
            "refused-stream" => RetryCondition::RefusedStream,
            "gateway-error" => RetryCondition::GatewayError,
            "5xx" => RetryCondition::ServerError,
            "retriable-4xx" => RetryCondition::Retriable4xx,
            "cancelled" => RetryCondition::GrpcCancelled,
            "deadline-exceeded" => RetryCondition::GrpcDeadlineExceeded,
            "internal" => RetryCondition::GrpcInternal,
            "resource-exhausted" => RetryCondition::GrpcResourceExhausted,
            "unavailable" => RetryCondition::GrpcUnavailable,
            code if code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()) => {
                match code.parse::<u16>() {
                    Ok(status @ 100..=599) => RetryCondition::Status(status),
                    _ => return Err(UnknownRetryCondition(text.to_string())),
                }
            }
            _ => return Err(UnknownRetryCondition(text.to_string())),
        })
    }
}

impl fmt::Display for RetryCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            RetryCondition::ConnectFailure => "connect-failure",
            RetryCondition::Reset => "reset",
            RetryCondition::RefusedStream => "refused-stream",
            RetryCondition::GatewayError => "gateway-error",
            RetryCondition::ServerError => "5xx",
            RetryCondition::Retriable4xx => "retriable-4xx",
            RetryCondition::GrpcCancelled => "cancelled",
            RetryCondition::GrpcDeadlineExceeded => "deadline-exceeded",
            RetryCondition::GrpcInternal => "internal",
            RetryCondition::GrpcResourceExhausted => "resource-exhausted",
            RetryCondition::GrpcUnavailable => "unavailable",
            RetryCondition::Status(code) => return write!(f, "{code}"),
        };
        f.write_str(name)
    }
}

impl TryFrom<String> for RetryCondition {
    type Error = UnknownRetryCondition;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<RetryCondition> for String {
    fn from(condition: RetryCondition) -> String {
        condition.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_status_codes_round_trip() {
        for name in RETRY_CONDITION_NAMES
            .iter()
            .chain(&["503", "409", "100", "599"])
        {
            let condition: RetryCondition = name.parse().unwrap();
            assert_eq!(condition.to_string(), *name);
            let json = serde_json::to_string(&condition).unwrap();
            assert_eq!(
                serde_json::from_str::<RetryCondition>(&json).unwrap(),
                condition
            );
        }
    }

    #[test]
    fn anything_else_is_refused_naming_what_is_allowed() {
        for bad in ["sometimes", "", "600", "099", "50", "5000", "+50", "Reset"] {
            let error = bad.parse::<RetryCondition>().unwrap_err();
            assert!(error.to_string().contains(&format!("{bad:?}")), "{error}");
            assert!(error.to_string().contains("gateway-error"), "{error}");
        }
        let json = serde_json::from_str::<RetryCondition>("\"sometimes\"");
        assert!(json.unwrap_err().to_string().contains("unknown condition"));
    }
}
