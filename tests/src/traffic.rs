//! Continuous traffic through a sidecar while a test changes the mesh: it counts every
//! request and keeps every failure, so a test can assert that nothing failed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;

use crate::client::{Http1, get_h1};

/// A background loop of requests to `host` through `outbound`.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Traffic {
    /// Mostly over one kept-alive connection, every tenth request on a new one. Bounded:
    /// stops by itself after `limit` requests.
    pub fn start(outbound: SocketAddr, host: &str, limit: u64) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let (host, s, n, f) = (
            host.to_string(),
            stop.clone(),
            sent.clone(),
            failures.clone(),
        );
        let task = tokio::spawn(async move {
            let mut kept: Option<Http1> = None;
            while !s.load(Ordering::SeqCst) && n.load(Ordering::SeqCst) < limit {
                let i = n.fetch_add(1, Ordering::SeqCst);
                let reply = if i % 10 == 0 {
                    get_h1(outbound, &host, "/traffic").await
                } else {
                    if kept.is_none() {
                        kept = Http1::connect(outbound).await.ok();
                    }
                    match kept.as_mut() {
                        Some(conn) => conn.get(&host, "/traffic", &[]).await,
                        None => Err("cannot connect to the outbound port".into()),
                    }
                };
                match reply {
                    Ok(r) if r.status == 200 => {}
                    Ok(r) => f.lock().await.push(format!("{}: {}", r.status, r.body)),
                    Err(e) => {
                        kept = None;
                        f.lock().await.push(e);
                    }
                }
                // A steady stream, not a flood: the machine is shared with the sidecars.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        Traffic {
            stop,
            sent,
            failures,
            task,
        }
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// Stops the loop and fails the test if any request failed.
    pub async fn expect_no_failures(self) {
        let (sent, failures) = self.finish().await;
        assert!(
            failures.is_empty(),
            "{} of {sent} requests failed, e.g. {:?}",
            failures.len(),
            &failures[..failures.len().min(3)]
        );
    }

    /// Stops the loop; returns (requests sent, failures).
    pub async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        let failures = self.failures.lock().await.clone();
        (self.sent.load(Ordering::SeqCst), failures)
    }
}
