//! The resilience mechanisms as plain, clock-driven parts (tokio time, so
//! they are tested with paused time): retry budget, retry conditions, circuit breaker,
//! bulkhead, rate limit, adaptive concurrency limit and deadline propagation. The data
//! path composes them; none of them does I/O.

pub(crate) mod adaptive;
pub(crate) mod breaker;
pub(crate) mod budget;
pub(crate) mod circuit;
pub(crate) mod concurrency_limit;
pub(crate) mod counters;
pub(crate) mod deadline;
pub(crate) mod policy;
pub(crate) mod rate_limit;
pub(crate) mod replay;
pub(crate) mod retry_on;
