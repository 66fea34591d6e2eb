//! The one place a refused API request is counted and logged: every refusal counts in
//! `api_requests_refused_total` (certificate requests in their own family too), and a
//! warning names who was refused and why, through the log throttle, so that a flood of
//! refusals leaves a sample in the log and an exact count in the metrics.

use tracing::warn;

use super::api_error::ApiFailure;
use super::{ConnInfo, Shared};
use crate::metrics::Endpoint;

/// What the throttle keys refusal lines by: where, why, and who (the client
/// certificate's identity, or the peer's IP address without one).
pub(crate) type RefusalKey = (Endpoint, crate::metrics::Refusal, String);

/// Counts `failure` and, unless the throttle says this key has had its line, logs it.
pub(crate) fn refused(shared: &Shared, conn: &ConnInfo, endpoint: Endpoint, failure: &ApiFailure) {
    let reason = failure.refusal();
    match endpoint {
        Endpoint::Certificates => shared.metrics.refused(reason),
        other => shared.metrics.api_refused(other, reason),
    }
    let who = match &conn.identity {
        Some(identity) => identity.to_string(),
        None => conn.peer.ip().to_string(),
    };
    if let Some(suppressed) = shared.refusal_log.admit((endpoint, reason, who)) {
        warn!(
            peer = %conn.peer,
            client_cert = conn.identity.as_ref().map(|id| id.as_str()).unwrap_or("-"),
            error = reason.label(),
            reason = %failure.message(),
            // Lines like this one left out since the last (same endpoint, reason, caller).
            suppressed,
            "refused {}",
            what(endpoint)
        );
    }
}

fn what(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Certificates => "certificate request",
        Endpoint::Watch => "watch",
        Endpoint::Register => "registration",
        Endpoint::Stats => "stats report",
        Endpoint::Admission => "admission review",
    }
}
