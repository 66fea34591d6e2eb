//! Cluster mode without a cluster: [`mock_api::MockApi`] answers the watchers with
//! recorded API-server responses (fixtures in `tests/fixtures/kubernetes/`).

mod feed_tests;
mod lease_tests;
pub(crate) mod mock_api;
mod server_tests;
mod status_tests;
