//! A token bucket for the inbound rate limit: `rate` tokens a second, up to `burst` saved.
//! A request takes one token; without one it is refused, with how long until the next
//! token (the `retry-after` the caller is given).

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct TokenBucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// Starts full, so a service is not refused the moment its policy arrives.
    pub(crate) fn new(per_second: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            per_second: f64::from(per_second.max(1)),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes a token, or says how long until one is available.
    pub(crate) fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64(
            (1.0 - self.tokens) / self.per_second,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn allows_the_burst_then_the_rate() {
        let mut bucket = TokenBucket::new(10, 5, Instant::now());
        for _ in 0..5 {
            assert!(bucket.try_take(Instant::now()).is_ok());
        }
        let wait = bucket.try_take(Instant::now()).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100), "one token every 100ms");
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(bucket.try_take(Instant::now()).is_ok());
        assert!(bucket.try_take(Instant::now()).is_err());
        // A long pause refills to the burst, not beyond.
        tokio::time::advance(Duration::from_secs(60)).await;
        let allowed = (0..20)
            .filter(|_| bucket.try_take(Instant::now()).is_ok())
            .count();
        assert_eq!(allowed, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn sustained_rate_matches_the_limit() {
        let mut bucket = TokenBucket::new(50, 1, Instant::now());
        let mut allowed = 0;
        // 10 seconds of a request every millisecond.
        for _ in 0..10_000 {
            if bucket.try_take(Instant::now()).is_ok() {
                allowed += 1;
            }
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        assert!((500..=501).contains(&allowed), "{allowed}");
    }
}
