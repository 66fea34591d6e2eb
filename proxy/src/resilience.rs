//! The resilience mechanisms as plain, clock-driven parts (tokio time, so
//! they are tested with paused time): retry budget, retry conditions, circuit breaker,
//! bulkhead, rate limit, adaptive concurrency limit and deadline propagation. The data
//! path composes them; none of them does I/O.

pub mod adaptive;
pub mod breaker;
pub mod budget;
pub mod circuit;
pub mod concurrency_limit;
pub mod counters;
pub mod deadline;
pub mod policy;
pub mod rate_limit;
pub mod replay;
pub mod retry_on;
