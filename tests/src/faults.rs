//! Faults a test app can be told to inject, per instance (`EchoApp::set_fault`) or per
//! request (headers), so that every resilience behaviour can be shown end to end:
//!
//! | header | effect |
//! |---|---|
//! | `x-fault-status: 503` | answer with that status |
//! | `x-fault-rate: 0.3` | apply the request's (or instance's) fault to 30% of requests only |
//! | `x-fault-delay-ms: 200` | answer that much later |
//! | `x-fault-reset: 1` | reset the connection / stream instead of answering |
//! | `x-fault-hang: 1` | never answer |

use std::time::Duration;

use http::HeaderMap;

/// What to do to one request. Default: nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fault {
    pub status: Option<u16>,
    /// Share of requests affected (1.0 = all).
    pub rate: Option<f64>,
    pub delay: Option<Duration>,
    pub reset: bool,
    pub hang: bool,
    /// Seconds for `retry-after` on an injected status.
    pub retry_after: Option<u64>,
}

/// What the app does with a request after applying its fault.
#[derive(Debug, PartialEq)]
pub enum Action {
    Answer,
    Status(u16),
    Reset,
    Hang,
}

impl Fault {
    /// A fault on every request: fail with `status`.
    pub fn status(status: u16) -> Fault {
        Fault {
            status: Some(status),
            ..Fault::default()
        }
    }

    /// The request's headers override the instance's fault field by field.
    pub fn merged_with(&self, headers: &HeaderMap) -> Fault {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        Fault {
            status: get("x-fault-status")
                .and_then(|v| v.parse().ok())
                .or(self.status),
            rate: get("x-fault-rate")
                .and_then(|v| v.parse().ok())
                .or(self.rate),
            delay: get("x-fault-delay-ms")
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis)
                .or(self.delay),
            reset: get("x-fault-reset").is_some() || self.reset,
            hang: get("x-fault-hang").is_some() || self.hang,
            retry_after: self.retry_after,
        }
    }

    /// Decides, with `roll` uniform in [0, 1), what happens to one request.
    pub fn action(&self, roll: f64) -> Action {
        if roll >= self.rate.unwrap_or(1.0) {
            return Action::Answer;
        }
        if self.hang {
            Action::Hang
        } else if self.reset {
            Action::Reset
        } else if let Some(status) = self.status {
            Action::Status(status)
        } else {
            Action::Answer
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_override_and_rate_applies() {
        let instance = Fault {
            rate: Some(0.3),
            ..Fault::status(503)
        };
        assert_eq!(instance.action(0.1), Action::Status(503));
        assert_eq!(instance.action(0.5), Action::Answer);
        let mut headers = HeaderMap::new();
        headers.insert("x-fault-reset", "1".parse().unwrap());
        headers.insert("x-fault-rate", "1".parse().unwrap());
        assert_eq!(instance.merged_with(&headers).action(0.9), Action::Reset);
        assert_eq!(Fault::default().action(0.0), Action::Answer);
    }
}
