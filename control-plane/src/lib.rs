//! Outrigger's control plane: the CA that issues sidecars their certificates, the policy
//! store they watch, and the pieces of the `outrigger` CLI (the binary itself is the
//! `outrigger-cli` package). Everything here is usable in-process (no global state, no
//! `exit`): `outrigger demo` (the `outrigger-demo` crate) and the tests run a [`Server`]
//! directly.

pub mod ca_init;
pub mod crds;
pub mod inject;
pub mod kubernetes;
pub mod limits;
pub mod log_throttle;
pub mod metrics;
pub mod open_files;
pub mod policy;
pub mod proxies;
pub mod registry;
pub mod reload;
pub mod revocation;
pub mod server;
pub mod snapshot;
pub mod stat_table;
pub mod stats;
pub mod status_report;
pub mod token;
pub mod watchers;

pub use server::{ClusterMode, ServeConfig, ServeError, Server, control_plane_identity};
pub use snapshot::SnapshotPublisher;
pub use token::{TokenError, TokenKey};
