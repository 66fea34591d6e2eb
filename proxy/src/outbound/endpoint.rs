//! One instance of a service, as the outbound side sees it: its pooled connection and
//! the load the balancer reads. Discovery keeps an endpoint that stays in the snapshot,
//! so both its connection and its latency history survive a config change.

use std::net::SocketAddr;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;

use crate::balance::{Balanced, Load};
use crate::error::ProxyError;
use crate::outbound::pool::Http2Endpoint;

pub struct Endpoint {
    connection: Http2Endpoint,
    load: Load,
}

impl Endpoint {
    pub fn new(connection: Http2Endpoint, now: Instant) -> Self {
        Endpoint {
            connection,
            load: Load::new(now),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.connection.addr()
    }

    /// A sender on the endpoint's live connection, connecting if there is none.
    pub async fn sender(&self) -> Result<SendRequest<Incoming>, ProxyError> {
        self.connection.sender().await
    }
}

impl Balanced for Endpoint {
    fn load(&self) -> &Load {
        &self.load
    }
}
