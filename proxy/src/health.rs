//! Health of the local app, as the control plane should see it: an HTTP GET of
//! `OUTRIGGER_APP_HEALTH` every interval; a run of failures makes the app unhealthy (its
//! instance leaves the endpoint set), a run of successes makes it healthy again. Without a
//! health path the app counts as healthy while the proxy runs.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Turns single check results into a state that only flips after a run of them, so one
/// slow answer does not pull an instance out of rotation.
#[derive(Clone, Debug)]
pub(crate) struct HealthTracker {
    failures_to_unhealthy: u32,
    successes_to_healthy: u32,
    healthy: bool,
    /// Consecutive results that disagree with `healthy`.
    streak: u32,
}

impl HealthTracker {
    /// Starts unhealthy: an instance is not sent traffic before its app has answered once.
    pub(crate) fn new(failures_to_unhealthy: u32, successes_to_healthy: u32) -> Self {
        HealthTracker {
            failures_to_unhealthy: failures_to_unhealthy.max(1),
            successes_to_healthy: successes_to_healthy.max(1),
            healthy: false,
            streak: 0,
        }
    }

    #[cfg(test)]
    pub(crate) fn healthy(&self) -> bool {
        self.healthy
    }

    /// Records one check; returns the new state if it changed.
    pub(crate) fn observe(&mut self, passed: bool) -> Option<bool> {
        if passed == self.healthy {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if passed {
            self.successes_to_healthy
        } else {
            self.failures_to_unhealthy
        };
        if self.streak < needed {
            return None;
        }
        self.healthy = passed;
        self.streak = 0;
        Some(passed)
    }
}

/// How to check the app.
#[derive(Clone, Debug)]
pub(crate) struct HealthCheck {
    pub app: SocketAddr,
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub failures: u32,
    pub successes: u32,
}

/// Checks the app forever, publishing its state on `state`.
pub(crate) async fn check_app(check: HealthCheck, state: watch::Sender<bool>) {
    let mut tracker = HealthTracker::new(check.failures, check.successes);
    let mut ticker = tokio::time::interval(check.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let result = tokio::time::timeout(check.timeout, probe(check.app, &check.path))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {:?}", check.timeout)));
        if let Some(healthy) = tracker.observe(result.is_ok()) {
            match &result {
                Ok(()) => tracing::info!(app = %check.app, path = %check.path, "app is healthy"),
                Err(reason) => {
                    tracing::warn!(app = %check.app, path = %check.path, %reason, "app is unhealthy")
                }
            }
            state.send_replace(healthy);
        }
    }
}

/// One GET; any 2xx passes.
async fn probe(app: SocketAddr, path: &str) -> Result<(), String> {
    let tcp = TcpStream::connect(app).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request = Request::get(path)
        .header(http::header::HOST, app.to_string())
        .header(http::header::USER_AGENT, "outrigger-health")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("answered {}", response.status()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flips_only_after_a_run() {
        let mut t = HealthTracker::new(3, 2);
        assert!(!t.healthy(), "unhealthy until the app has answered");
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(true), Some(true));
        // Two failures, then a success: the run is broken, still healthy.
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), Some(false));
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(true), Some(true));
    }

    #[test]
    fn one_result_is_enough_with_thresholds_of_one() {
        let mut t = HealthTracker::new(1, 1);
        assert_eq!(t.observe(true), Some(true));
        assert_eq!(t.observe(false), Some(false));
    }
}
