//! A concurrency limit: at most `max_concurrent` requests in flight, at most `max_pending`
//! more waiting (each at most `queue_timeout`); anything beyond is refused at once. The
//! outbound bulkhead (one per destination service, so that a slow service fills only its
//! own) and the inbound fixed concurrency limit are both made of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// In flight and queue both full.
    Full,
    /// Waited `queue_timeout` in the queue.
    QueueTimeout,
}

#[derive(Debug)]
pub(crate) struct ConcurrencyLimit {
    permits: Arc<Semaphore>,
    pending: AtomicU32,
    max_concurrent: u32,
    max_pending: u32,
    queue_timeout: Duration,
}

/// How full a limit is now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Load {
    pub in_flight: u32,
    pub max_concurrent: u32,
    pub pending: u32,
}

/// Held while the request is in flight.
pub(crate) type Admission = OwnedSemaphorePermit;

impl ConcurrencyLimit {
    pub(crate) fn new(max_concurrent: u32, max_pending: u32, queue_timeout: Duration) -> Self {
        ConcurrencyLimit {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1) as usize)),
            pending: AtomicU32::new(0),
            max_concurrent: max_concurrent.max(1),
            max_pending,
            queue_timeout,
        }
    }

    /// Requests in flight and waiting now (for the dashboard's pressure gauges).
    pub(crate) fn load(&self) -> Load {
        let free = u32::try_from(self.permits.available_permits()).unwrap_or(u32::MAX);
        Load {
            in_flight: self.max_concurrent.saturating_sub(free),
            max_concurrent: self.max_concurrent,
            pending: self.pending.load(Ordering::Acquire),
        }
    }

    /// Admits at once if a slot is free: [`ConcurrencyLimit::admit`] without the queue.
    pub(crate) fn try_admit(&self) -> Option<Admission> {
        self.permits.clone().try_acquire_owned().ok()
    }

    pub(crate) async fn admit(&self) -> Result<Admission, Rejected> {
        if let Some(permit) = self.try_admit() {
            return Ok(permit);
        }
        if self.pending.fetch_add(1, Ordering::AcqRel) >= self.max_pending {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(Rejected::Full);
        }
        let waited =
            tokio::time::timeout(self.queue_timeout, self.permits.clone().acquire_owned()).await;
        self.pending.fetch_sub(1, Ordering::AcqRel);
        match waited {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; treat it like a full queue if it were.
            Ok(Err(_)) => Err(Rejected::Full),
            Err(_) => Err(Rejected::QueueTimeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn admits_queues_then_refuses() {
        let bulkhead = Arc::new(ConcurrencyLimit::new(2, 1, Duration::from_secs(1)));
        let a = bulkhead.admit().await.unwrap();
        let _b = bulkhead.admit().await.unwrap();
        assert_eq!(
            bulkhead.load(),
            Load {
                in_flight: 2,
                max_concurrent: 2,
                pending: 0
            }
        );
        // Third waits in the queue; fourth is refused at once.
        let queued = tokio::spawn({
            let bulkhead = bulkhead.clone();
            async move { bulkhead.admit().await.map(|_| ()) }
        });
        tokio::task::yield_now().await;
        assert_eq!(bulkhead.admit().await.unwrap_err(), Rejected::Full);
        // A slot frees up: the queued one gets in.
        drop(a);
        assert_eq!(queued.await.unwrap(), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn the_queue_times_out() {
        let bulkhead = Arc::new(ConcurrencyLimit::new(1, 5, Duration::from_millis(200)));
        let _held = bulkhead.admit().await.unwrap();
        let started = tokio::time::Instant::now();
        assert_eq!(bulkhead.admit().await.unwrap_err(), Rejected::QueueTimeout);
        assert_eq!(started.elapsed(), Duration::from_millis(200));
    }
}
