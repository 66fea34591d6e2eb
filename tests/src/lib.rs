//! The end-to-end harness: a real mesh on loopback (the `outrigger` and `outrigger-proxy`
//! binaries as child processes), tiny apps behind the sidecars, and real clients.

pub mod apps;
pub mod client;
pub mod cluster;
pub mod faults;
pub mod load;
pub mod mesh;
pub mod process;
pub mod relay;
pub mod sidecar;
pub mod traffic;

pub use apps::EchoApp;
pub use client::{
    Http1, Reply, get_h1, get_h1_absolute, get_h2, get_h2_tls, send_h2_tls, tls_client,
};
pub use cluster::{Cluster, PAYMENTS};
pub use faults::Fault;
pub use load::{Call, outcome, send_many, tally};
pub use mesh::Mesh;
pub use process::{Process, START_LIMIT, bin, eventually, free_port, loopback, run};
pub use relay::RelayApp;
pub use sidecar::Sidecar;
pub use traffic::Traffic;
