//! Cluster mode (`outrigger control-plane --kubernetes`): the API server holds the
//! mesh's state, so replicas are stateless and interchangeable. Everything that speaks
//! to Kubernetes is here; the rest of the control plane sees only what it sees in file
//! mode: policy documents (rendered from the cluster by [`documents`]), a CA in the
//! data dir (copied from a Secret by [`ca_secret`]), and one more way to prove an
//! identity ([`token_review`]).

mod admit;
pub mod ca_secret;
mod cluster_state;
pub mod convergence;
mod documents;
pub mod feed;
pub mod health;
pub mod lease;
pub mod peers;
pub mod status_writer;
pub mod token_review;
pub mod webhook_ca;

pub use feed::{ClusterFeed, WATCHED};
pub use health::ClusterHealth;

#[cfg(test)]
pub(crate) mod tests;
pub use token_review::{ReviewError, TokenReviewer};
