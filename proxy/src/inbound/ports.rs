//! Which local app a connection is for. Without redirection there is one app, at
//! `OUTRIGGER_APP_ADDR`. A connection that iptables redirected to the inbound port (or an
//! opaque one whose header names a port) is for 127.0.0.1 at that port, so a pod with
//! several ports works; a client per port is made on first use and kept.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::app::AppClient;
use crate::config::AppProtocol;
use crate::metrics::ProxyMetrics;

pub(crate) struct AppPorts {
    /// The configured app, if any.
    default: Option<Arc<AppClient>>,
    default_addr: Option<SocketAddr>,
    /// Ports that mean "the configured app": 0, and the inbound listener's own port
    /// (an endpoint registered as this sidecar's address names that port).
    own_port: u16,
    /// Other ports, by port. A std mutex: held for a lookup, never across an await.
    others: Mutex<HashMap<u16, Arc<AppClient>>>,
    protocol: AppProtocol,
    connect_timeout: Duration,
    metrics: Arc<ProxyMetrics>,
}

impl AppPorts {
    pub(crate) fn new(
        default_addr: Option<SocketAddr>,
        protocol: AppProtocol,
        connect_timeout: Duration,
        metrics: Arc<ProxyMetrics>,
    ) -> Self {
        AppPorts {
            default: default_addr.map(|addr| {
                Arc::new(AppClient::new(
                    addr,
                    protocol,
                    connect_timeout,
                    metrics.clone(),
                ))
            }),
            default_addr,
            own_port: 0,
            others: Mutex::new(HashMap::new()),
            protocol,
            connect_timeout,
            metrics,
        }
    }

    /// Says which port the inbound listener has (known once it is bound).
    pub(crate) fn with_own_port(mut self, port: u16) -> Self {
        self.own_port = port;
        self
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The app's address for a connection meant for `port` (`None`: not redirected).
    pub(crate) fn addr(&self, port: Option<u16>) -> Option<SocketAddr> {
        match port {
            Some(port) if !self.is_default(port) => {
                Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            }
            _ => self.default_addr,
        }
    }

    /// The HTTP client for the app at `port` (`None`: not redirected).
    pub(crate) fn client(&self, port: Option<u16>) -> Option<Arc<AppClient>> {
        let port = match port {
            Some(port) if !self.is_default(port) => port,
            _ => return self.default.clone(),
        };
        let mut others = self.others.lock().unwrap_or_else(PoisonError::into_inner);
        let client = others.entry(port).or_insert_with(|| {
            Arc::new(AppClient::new(
                SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                self.protocol,
                self.connect_timeout,
                self.metrics.clone(),
            ))
        });
        Some(client.clone())
    }

    fn is_default(&self, port: u16) -> bool {
        port == 0 || port == self.own_port || Some(port) == self.default_addr.map(|a| a.port())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_port_picks_the_app_and_the_own_port_means_the_configured_one() {
        let app: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let ports = AppPorts::new(
            Some(app),
            AppProtocol::Auto,
            Duration::from_secs(1),
            ProxyMetrics::new(),
        )
        .with_own_port(4143);
        assert_eq!(ports.addr(None), Some(app));
        assert_eq!(ports.addr(Some(0)), Some(app));
        assert_eq!(ports.addr(Some(4143)), Some(app));
        assert_eq!(
            ports.addr(Some(9000)).unwrap().to_string(),
            "127.0.0.1:9000"
        );
        let first = ports.client(Some(9000)).unwrap();
        assert!(
            Arc::ptr_eq(&first, &ports.client(Some(9000)).unwrap()),
            "kept"
        );
    }
}
