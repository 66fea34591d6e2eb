//! The end-to-end harness: a real mesh on loopback (the `outrigger` and `outrigger-proxy`
//! binaries as child processes), tiny apps behind the sidecars, and real clients, among
//! them a sidecar's view of the control plane's API (certificates, watch, register).

pub mod app_process;
pub mod apps;
pub mod browser;
pub mod ca_rotation;
pub mod chaos;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod components;
pub mod control_plane;
pub mod control_plane_client;
pub mod faults;
pub mod fixtures;
pub mod load;
pub mod mesh;
pub mod netns;
pub mod open_loop;
pub mod otlp_receiver;
pub mod process;
pub mod procstat;
pub mod raw_api;
pub mod relay;
pub mod sidecar;
pub mod stats;
pub mod traffic;
pub mod watch;

pub use app_process::AppProcess;
pub use apps::EchoApp;
pub use browser::Browser;
pub use cli::{path, stderr, stdout, the_error_line};
pub use client::{
    Http1, Reply, get_h1, get_h1_absolute, get_h2, get_h2_tls, send_h2_tls, tls_client,
};
pub use cluster::{Cluster, PAYMENTS};
pub use control_plane::ControlPlane;
pub use control_plane_client::{
    KeepAlive, Workload, call, control_plane_tls, enroll, id, identity_of, request_certificate,
    send, send_on_connection,
};
pub use faults::Fault;
pub use fixtures::{DESIGN_EXAMPLE, PAYMENTS_YAML, fixtures_dir};
pub use load::{Call, outcome, send_many, tally};
pub use mesh::{Mesh, write_atomically};
pub use netns::{Network, Pod};
pub use otlp_receiver::{OtlpReceiver, ReceivedSpan};
pub use process::{Process, START_LIMIT, bin, eventually, free_port, loopback, run};
pub use raw_api::{RawApi, request_head, status_and_body};
pub use relay::RelayApp;
pub use sidecar::Sidecar;
pub use stats::{SidecarTotals, ms};
pub use traffic::Traffic;
pub use watch::WatchStream;
