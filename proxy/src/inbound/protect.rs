//! What protects the app behind this sidecar, from its ServerPolicy: a token-bucket rate
//! limit (429 with `retry-after`), and a concurrency limit, fixed (`max`: that many in
//! flight, as many again waiting up to a second, like an outbound bulkhead) or adaptive
//! (an AIMD limit that follows the app's latency; beyond it, refused at once).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use outrigger_api::ServerPolicySpec;
use tokio::time::Instant;

use crate::error::{ErrorCode, ProxyError};
use crate::resilience::adaptive::AimdLimit;
use crate::resilience::concurrency_limit::{Admission, ConcurrencyLimit};
use crate::resilience::rate_limit::TokenBucket;

/// How long a request may wait for a slot under a fixed concurrency limit.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub(crate) struct Protection {
    rate: Option<Mutex<TokenBucket>>,
    limit: Option<Limit>,
}

#[derive(Debug)]
enum Limit {
    Fixed(ConcurrencyLimit),
    Adaptive {
        limit: Mutex<AimdLimit>,
        in_flight: AtomicU32,
    },
}

/// Held while the request is with the app; tells the adaptive limit how it went.
pub(crate) struct Pass<'a> {
    _fixed: Option<Admission>,
    adaptive: Option<(&'a Protection, u32, Instant)>,
}

impl Pass<'_> {
    /// The app answered (`failed`: it failed or timed out).
    pub(crate) fn done(mut self, failed: bool) {
        if let Some((protection, in_flight, started)) = self.adaptive.take() {
            protection.release(Some((failed, in_flight, started)));
        }
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if let Some((protection, ..)) = self.adaptive.take() {
            // Abandoned (the caller went away): free the slot, learn nothing.
            protection.release(None);
        }
    }
}

impl Protection {
    pub(crate) fn compile(spec: Option<&ServerPolicySpec>) -> Self {
        let Some(spec) = spec else {
            return Protection::default();
        };
        let now = Instant::now();
        let rate = spec.rate_limit.as_ref().map(|r| {
            Mutex::new(TokenBucket::new(
                r.requests_per_second,
                r.burst.unwrap_or(r.requests_per_second),
                now,
            ))
        });
        let limit = spec
            .concurrency
            .as_ref()
            .and_then(|c| match (c.max, c.adaptive) {
                (Some(max), _) => {
                    Some(Limit::Fixed(ConcurrencyLimit::new(max, max, QUEUE_TIMEOUT)))
                }
                (None, Some(true)) => Some(Limit::Adaptive {
                    limit: Mutex::new(AimdLimit::new(20, 1, 10_000, now)),
                    in_flight: AtomicU32::new(0),
                }),
                _ => None,
            });
        Protection { rate, limit }
    }

    /// Lets a request through to the app, or says why not.
    pub(crate) async fn admit(&self) -> Result<Pass<'_>, ProxyError> {
        if let Some(rate) = &self.rate {
            let verdict = rate
                .lock()
                .map(|mut bucket| bucket.try_take(Instant::now()))
                .unwrap_or(Ok(()));
            if let Err(wait) = verdict {
                let mut error =
                    ProxyError::new(ErrorCode::RateLimited, "over the service's rate limit");
                error.retry_after = Some(wait);
                return Err(error);
            }
        }
        match &self.limit {
            None => Ok(Pass {
                _fixed: None,
                adaptive: None,
            }),
            Some(Limit::Fixed(bulkhead)) => bulkhead
                .admit()
                .await
                .map(|admission| Pass {
                    _fixed: Some(admission),
                    adaptive: None,
                })
                .map_err(|why| {
                    ProxyError::new(
                        ErrorCode::BulkheadFull,
                        format!("the app's concurrency limit is reached ({why:?})"),
                    )
                }),
            Some(Limit::Adaptive { limit, in_flight }) => {
                let current = limit.lock().map(|l| l.limit()).unwrap_or(u32::MAX);
                let admitted = in_flight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < current).then_some(n + 1)
                });
                match admitted {
                    Ok(before) => Ok(Pass {
                        _fixed: None,
                        adaptive: Some((self, before + 1, Instant::now())),
                    }),
                    Err(_) => Err(ProxyError::new(
                        ErrorCode::BulkheadFull,
                        format!("the app's adaptive concurrency limit ({current}) is reached"),
                    )),
                }
            }
        }
    }

    fn release(&self, sample: Option<(bool, u32, Instant)>) {
        if let Some(Limit::Adaptive { limit, in_flight }) = &self.limit {
            in_flight.fetch_sub(1, Ordering::AcqRel);
            if let (Some((failed, at_start, started)), Ok(mut limit)) = (sample, limit.lock()) {
                let now = Instant::now();
                limit.record(now - started, failed, at_start, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outrigger_api::{Concurrency, RateLimit};

    fn spec(rate: Option<RateLimit>, concurrency: Option<Concurrency>) -> ServerPolicySpec {
        ServerPolicySpec {
            rate_limit: rate,
            concurrency,
            ..ServerPolicySpec::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limit_answers_429_with_the_wait() {
        let p = Protection::compile(Some(&spec(
            Some(RateLimit {
                requests_per_second: 2,
                burst: Some(2),
            }),
            None,
        )));
        assert!(p.admit().await.is_ok());
        assert!(p.admit().await.is_ok());
        let refused = p.admit().await.err().unwrap();
        assert_eq!(refused.code, ErrorCode::RateLimited);
        assert_eq!(refused.retry_after, Some(Duration::from_millis(500)));
    }

    #[tokio::test(start_paused = true)]
    async fn fixed_limit_queues_then_refuses() {
        let p = Protection::compile(Some(&spec(
            None,
            Some(Concurrency {
                max: Some(1),
                adaptive: None,
            }),
        )));
        let held = p.admit().await.unwrap();
        // The queued one waits its second, then is refused.
        let refused = p.admit().await.err().unwrap();
        assert_eq!(refused.code, ErrorCode::BulkheadFull);
        held.done(false);
        assert!(p.admit().await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn adaptive_limit_refuses_beyond_its_limit_and_frees_slots() {
        let p = Protection::compile(Some(&spec(
            None,
            Some(Concurrency {
                max: None,
                adaptive: Some(true),
            }),
        )));
        let passes: Vec<_> = futures_collect(&p, 20).await;
        assert_eq!(p.admit().await.err().unwrap().code, ErrorCode::BulkheadFull);
        drop(passes);
        assert!(p.admit().await.is_ok(), "abandoned passes free their slots");
    }

    async fn futures_collect(p: &Protection, n: usize) -> Vec<Pass<'_>> {
        let mut passes = Vec::new();
        for _ in 0..n {
            passes.push(p.admit().await.unwrap());
        }
        passes
    }
}
