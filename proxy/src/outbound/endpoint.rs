//! One instance of a service, as the outbound side sees it: its pooled connection, the
//! load the balancer reads, and its circuit breaker. A target rebuilt for a changed config
//! keeps an endpoint that stays, so its connection, latency history and breaker state survive a
//! config change (a changed breaker config starts a fresh breaker).

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hyper::client::conn::http2::SendRequest;
use tokio::time::Instant;

use crate::balance::{Balanced, Load};
use crate::error::ProxyError;
use crate::resilience::breaker::BreakerConfig;
use crate::resilience::circuit::Circuit;
use crate::resilience::replay::OutboundBody;
use crate::transport::Http2Connection;

pub(crate) struct Endpoint {
    connection: Http2Connection<OutboundBody>,
    load: Load,
    circuit: ArcSwap<Circuit>,
    breaker: ArcSwap<BreakerConfig>,
}

impl Endpoint {
    pub(crate) fn new(
        connection: Http2Connection<OutboundBody>,
        circuit: Arc<Circuit>,
        breaker: BreakerConfig,
        now: Instant,
    ) -> Self {
        Endpoint {
            connection,
            load: Load::new(now),
            circuit: ArcSwap::new(circuit),
            breaker: ArcSwap::from_pointee(breaker),
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.connection.addr()
    }

    /// A sender on the endpoint's live connection, connecting if there is none.
    pub(crate) async fn sender(&self) -> Result<SendRequest<OutboundBody>, ProxyError> {
        self.connection.sender().await
    }

    pub(crate) fn circuit(&self) -> arc_swap::Guard<Arc<Circuit>> {
        self.circuit.load()
    }

    /// The breaker config the current circuit runs with.
    pub(crate) fn breaker_config(&self) -> Arc<BreakerConfig> {
        self.breaker.load_full()
    }

    /// A new breaker (policy change): the old circuit's task ends with its last handle.
    pub(crate) fn replace_circuit(&self, circuit: Arc<Circuit>, breaker: BreakerConfig) {
        self.circuit.store(circuit);
        self.breaker.store(Arc::new(breaker));
    }
}

impl Balanced for Endpoint {
    fn load(&self) -> &Load {
        &self.load
    }

    fn is_usable(&self) -> bool {
        self.circuit.load().is_usable()
    }
}
