//! What one client may take of the control plane: the bounds that keep a misbehaving or
//! hostile client from exhausting it, each with a default and a flag. What a client sees
//! when it meets one is in docs/control-plane-limits.md.

use std::time::Duration;

use crate::{proxies, registry};

/// The default `--max-connections`: far above a mesh's proxies (each holds one watch
/// connection and opens short ones to renew and register), far below the open-file
/// limit the control plane raises itself to on most systems.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// The default `--watch-stall-timeout`. A proxy reads its stream continuously; one whose
/// next line cannot be written for this long (every buffer on the way full) is stopped
/// or stuck, and holds memory for nothing. It reconnects when it wakes up.
pub const DEFAULT_WATCH_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The bounds, as the flags of `outrigger control-plane` set them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Open API connections; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// A watch stream whose next line waits longer than this to be written is cut.
    pub watch_stall_timeout: Duration,
    /// Registered instances of one service, healthy or not; more are refused (429).
    pub max_instances_per_service: usize,
    /// Proxy ids one identity may have known at once; a new one beyond is refused (429).
    pub max_proxies_per_identity: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            watch_stall_timeout: DEFAULT_WATCH_STALL_TIMEOUT,
            max_instances_per_service: registry::DEFAULT_MAX_INSTANCES_PER_SERVICE,
            max_proxies_per_identity: proxies::DEFAULT_MAX_PER_IDENTITY,
        }
    }
}

impl Limits {
    /// Every bound must let something through.
    pub fn check(&self) -> Result<(), String> {
        let zero = [
            (self.max_connections, "--max-connections"),
            (
                self.max_instances_per_service,
                "--max-instances-per-service",
            ),
            (self.max_proxies_per_identity, "--max-proxies-per-identity"),
        ]
        .into_iter()
        .find(|(n, _)| *n == 0);
        if let Some((_, flag)) = zero {
            return Err(format!("{flag} must be at least 1"));
        }
        if self.watch_stall_timeout < Duration::from_millis(100) {
            return Err(format!(
                "--watch-stall-timeout {:?} is too short (at least 100ms)",
                self.watch_stall_timeout
            ));
        }
        Ok(())
    }
}
