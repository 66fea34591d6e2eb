//! The cap on open API connections (`--max-connections`). Each connection costs a file
//! descriptor, a task and TLS buffers; past the cap a new one is closed as soon as it is
//! accepted, before its TLS handshake (the costly part), counted, and logged at most once
//! per 10 seconds with the number closed since. Connections already open go on, and the
//! plain-HTTP port (health, metrics) has its own small cap.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::warn;

use crate::log_throttle::LogThrottle;
use crate::metrics::Metrics;

/// How often a full listener says so.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Open connections to one port, at most `max`.
#[derive(Debug)]
pub(crate) struct ConnectionCap {
    what: &'static str,
    max: usize,
    permits: Arc<Semaphore>,
    metrics: Option<Arc<Metrics>>,
    full: LogThrottle<()>,
}

impl ConnectionCap {
    /// `metrics`: where refusals count (the API port's); `what` names the port in logs.
    pub(crate) fn new(what: &'static str, max: usize, metrics: Option<Arc<Metrics>>) -> Self {
        ConnectionCap {
            what,
            max,
            permits: Arc::new(Semaphore::new(max)),
            metrics,
            full: LogThrottle::new(WARN_EVERY, 1),
        }
    }

    /// A place for a connection just accepted, held while it is served; `None` (the
    /// connection is to be closed) when `max` are open.
    pub(crate) fn admit(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Some(permit);
        }
        if let Some(metrics) = &self.metrics {
            metrics.api_connection_refused();
        }
        if let Some(also_closed) = self.full.admit(()) {
            warn!(
                max = self.max,
                also_closed,
                "{} connection closed at once: {} connections are open, the most --max-connections allows",
                self.what,
                self.max
            );
        }
        None
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.max - self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn admits_up_to_the_cap_and_again_once_one_closes() {
        let metrics = Arc::new(Metrics::default());
        let cap = ConnectionCap::new("API", 2, Some(metrics.clone()));
        let a = cap.admit().unwrap();
        let _b = cap.admit().unwrap();
        assert_eq!(cap.open(), 2);
        assert!(cap.admit().is_none());
        assert!(cap.admit().is_none());
        drop(a);
        assert_eq!(cap.open(), 1);
        assert!(cap.admit().is_some());
        let text = metrics.render(Default::default());
        assert!(
            text.contains("outrigger_control_plane_api_connections_refused_total 2\n"),
            "{text}"
        );
    }
}
