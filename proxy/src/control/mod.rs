//! The proxy's side of the control-plane API.

mod client;
pub mod register;
pub mod watch;

pub use client::ControlPlaneClient;
