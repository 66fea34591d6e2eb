//! The proxy's side of the control-plane API.

mod certify;
mod client;
pub mod register;
pub mod watch;

pub use certify::certify;
pub use client::ControlPlaneClient;
