//! The proxy's side of the control-plane API.

mod certify;
mod client;
pub(crate) mod register;
pub(crate) mod stats;
pub(crate) mod watch;

pub(crate) use certify::certify;
pub(crate) use client::ControlPlaneClient;
