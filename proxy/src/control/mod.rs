//! The proxy's side of the control-plane API.

mod client;
pub mod watch;

pub use client::ControlPlaneClient;
