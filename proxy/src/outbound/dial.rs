//! Connections that go around the request stack (opaque TCP, upgraded HTTP tunnels) but
//! still through the balancer and the breaker. `Target::pick` claims the circuit's pass
//! (when half-open, the one probe), so the connection's outcome must go back to that
//! circuit, as the stack's RecordOutcome layer does for a request: otherwise a probe
//! would stay claimed until the breaker's probe timeout gave up on it.

use std::future::Future;
use std::sync::Arc;

use tokio::time::Instant;

use super::endpoint::Endpoint;
use super::{Pick, Target};
use crate::error::{ErrorCode, ProxyError};

/// Picks an endpoint of `target` and runs `connect` on it; `healthy` says whether what
/// it made speaks well of the endpoint (an error never does). A `connect` dropped before
/// it ends (the caller left) says nothing about the endpoint and is not counted, as in
/// the request stack; the breaker's probe timeout frees a probe nobody reported.
pub(super) async fn dial<'t, T, F, Fut>(
    target: &'t Target,
    now: Instant,
    connect: F,
    healthy: impl FnOnce(&T) -> bool,
) -> Result<T, ProxyError>
where
    F: FnOnce(&'t Arc<Endpoint>) -> Fut,
    Fut: Future<Output = Result<T, ProxyError>>,
{
    let endpoint = match target.pick(now, None) {
        Pick::Endpoint(endpoint) => endpoint,
        Pick::NoEndpoints => {
            return Err(ProxyError::new(
                ErrorCode::NoEndpoints,
                "the service has no endpoints",
            ));
        }
        Pick::AllOpen => {
            return Err(ProxyError::new(
                ErrorCode::CircuitOpen,
                "every endpoint's circuit is open",
            ));
        }
    };
    let result = connect(endpoint).await;
    endpoint
        .circuit()
        .record(result.as_ref().is_ok_and(healthy));
    result
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::outbound::stack::tests::target;

    fn refused() -> ProxyError {
        ProxyError::new(ErrorCode::ConnectFailed, "scripted: refused")
    }

    /// Lets the breaker's task take the outcomes queued so far.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_connection_opens_the_circuit_and_an_established_one_closes_it() {
        let f = target(
            1,
            r#"{"circuitBreaker": {"consecutiveFailures": 1, "baseEjection": "10s", "maxEjectedPercent": 100}}"#,
        );
        let failed = dial(
            &f.target,
            Instant::now(),
            |_| async { Err::<(), _>(refused()) },
            |_| true,
        )
        .await;
        assert_eq!(failed.expect_err("refused").code, ErrorCode::ConnectFailed);
        settle().await;
        let open = dial(&f.target, Instant::now(), |_| async { Ok(()) }, |_| true).await;
        assert_eq!(open.expect_err("ejected").code, ErrorCode::CircuitOpen);

        // Half-open: this connection is the probe, and its success closes the circuit.
        tokio::time::sleep(Duration::from_secs(11)).await;
        dial(&f.target, Instant::now(), |_| async { Ok(()) }, |_| true)
            .await
            .expect("the probe goes through");
        settle().await;
        // Unreported, the probe would still be claimed and these would be refused.
        for _ in 0..3 {
            dial(&f.target, Instant::now(), |_| async { Ok(()) }, |_| true)
                .await
                .expect("closed again");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_unhealthy_result_counts_as_a_failure() {
        let f = target(
            1,
            r#"{"circuitBreaker": {"consecutiveFailures": 1, "baseEjection": "10s", "maxEjectedPercent": 100}}"#,
        );
        let made = dial(
            &f.target,
            Instant::now(),
            |_| async { Ok(503u16) },
            |s| *s < 500,
        )
        .await;
        assert_eq!(made.expect("made"), 503);
        settle().await;
        let open = dial(
            &f.target,
            Instant::now(),
            |_| async { Ok(200u16) },
            |_| true,
        )
        .await;
        assert_eq!(open.expect_err("ejected").code, ErrorCode::CircuitOpen);
    }
}
