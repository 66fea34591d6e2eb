//! What the proxy may call, from the control plane's snapshots: services by the names an
//! app may use for them, each with its identity, endpoints and connections. A snapshot
//! replaces the table atomically; targets and endpoint connections that did not change
//! are carried over, so applying a snapshot drops no connection and no request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use arc_swap::ArcSwap;
use outrigger_api::{ServiceView, Snapshot};
use outrigger_certs::{ServerIdVerifier, SpiffeId, client_config};
use tokio::sync::watch;

use crate::identity::Identity;
use crate::metrics::{Direction, Registry, ServiceMetrics};
use crate::outbound::pool::{Http2Endpoint, Transport};

/// A service this proxy may call.
pub struct Target {
    pub name: String,
    pub namespace: String,
    pub identity: SpiffeId,
    pub endpoints: Vec<Arc<Http2Endpoint>>,
    next: AtomicUsize,
    pub metrics: Arc<ServiceMetrics>,
}

impl Target {
    /// Round-robin over the endpoints (peak-EWMA arrives with issue #3).
    pub fn pick(&self) -> Option<&Arc<Http2Endpoint>> {
        if self.endpoints.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Relaxed) % self.endpoints.len();
        self.endpoints.get(i)
    }
}

#[derive(Default)]
pub struct Table {
    pub version: u64,
    by_authority: HashMap<String, Arc<Target>>,
    pub targets: Vec<Arc<Target>>,
}

impl Table {
    /// The target for a request's host (port and letter case ignored).
    pub fn lookup(&self, host: &str) -> Option<&Arc<Target>> {
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.by_authority.get(&host.to_ascii_lowercase());
        }
        self.by_authority.get(host)
    }
}

pub struct Discovery {
    table: ArcSwap<Table>,
    applied: watch::Sender<u64>,
    identity: Arc<Identity>,
    metrics: Arc<Registry>,
    connect_timeout: Duration,
}

impl Discovery {
    pub fn new(
        identity: Arc<Identity>,
        metrics: Arc<Registry>,
        connect_timeout: Duration,
    ) -> Arc<Self> {
        Arc::new(Discovery {
            table: ArcSwap::from_pointee(Table::default()),
            applied: watch::channel(0).0,
            identity,
            metrics,
            connect_timeout,
        })
    }

    pub fn table(&self) -> arc_swap::Guard<Arc<Table>> {
        self.table.load()
    }

    /// Whether a snapshot has been applied.
    pub fn has_config(&self) -> bool {
        *self.applied.borrow() > 0
    }

    /// Applies a snapshot: the trust bundle first, then the services.
    pub fn apply(&self, snapshot: &Snapshot) {
        if let Err(error) = self.identity.bundle.update(&snapshot.trust_bundle) {
            tracing::warn!(%error, "keeping the current trust bundle");
        }
        let old = self.table.load_full();
        let own_namespace = self.identity.id().map(|id| id.namespace().to_string());
        let mut table = Table {
            version: snapshot.version,
            ..Table::default()
        };
        for view in &snapshot.services {
            match self.target(view, &old) {
                Ok(target) => table.targets.push(target),
                Err(error) => tracing::warn!(service = %view.name, %error, "skipping service"),
            }
        }
        for target in &table.targets {
            for name in authorities(target) {
                table.by_authority.insert(name, target.clone());
            }
        }
        // A bare name means the service in our own namespace; else the only one so named.
        let mut bare: HashMap<&str, Vec<&Arc<Target>>> = HashMap::new();
        for target in &table.targets {
            bare.entry(&target.name).or_default().push(target);
        }
        let mut bare_names = Vec::new();
        for (name, candidates) in bare {
            let chosen = candidates
                .iter()
                .find(|t| Some(&t.namespace) == own_namespace.as_ref())
                .or_else(|| (candidates.len() == 1).then(|| &candidates[0]));
            if let Some(target) = chosen {
                bare_names.push((name.to_string(), (*target).clone()));
            }
        }
        table.by_authority.extend(bare_names);
        self.metrics.config_version.store(snapshot.version, Relaxed);
        self.table.store(Arc::new(table));
        self.applied.send_replace(snapshot.version);
        tracing::info!(
            version = snapshot.version,
            services = snapshot.services.len(),
            "config applied"
        );
    }

    fn target(&self, view: &ServiceView, old: &Table) -> Result<Arc<Target>, String> {
        let identity: SpiffeId = view.identity.parse().map_err(|e| format!("{e}"))?;
        let addrs = view
            .endpoints
            .iter()
            .map(|e| {
                e.address
                    .parse::<SocketAddr>()
                    .map_err(|_| format!("bad endpoint {:?}", e.address))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let previous = old.targets.iter().find(|t| {
            t.name == view.name && t.namespace == view.namespace && t.identity == identity
        });
        if let Some(previous) = previous {
            let same = previous.endpoints.len() == addrs.len()
                && previous
                    .endpoints
                    .iter()
                    .zip(&addrs)
                    .all(|(e, a)| e.addr() == *a);
            if same {
                return Ok(previous.clone());
            }
        }
        let tls = client_config(
            Some(self.identity.certs.clone()),
            ServerIdVerifier::new(self.identity.bundle.clone(), identity.clone()),
            &[b"h2"],
        )
        .map_err(|e| e.to_string())?;
        let endpoints = addrs
            .into_iter()
            .map(|addr| {
                // Keep the live connection of an endpoint that stays.
                previous
                    .and_then(|p| p.endpoints.iter().find(|e| e.addr() == addr).cloned())
                    .unwrap_or_else(|| {
                        Arc::new(Http2Endpoint::new(
                            addr,
                            Transport::Tls(tls.clone()),
                            self.connect_timeout,
                            self.metrics.clone(),
                        ))
                    })
            })
            .collect();
        let label = format!("{}.{}", view.name, view.namespace);
        Ok(Arc::new(Target {
            name: view.name.clone(),
            namespace: view.namespace.clone(),
            identity,
            endpoints,
            next: AtomicUsize::new(0),
            metrics: self.metrics.service(Direction::Outbound, &label),
        }))
    }
}

/// The fully qualified names a target answers to, Kubernetes style.
fn authorities(target: &Target) -> [String; 3] {
    let (name, ns) = (&target.name, &target.namespace);
    [
        format!("{name}.{ns}"),
        format!("{name}.{ns}.svc"),
        format!("{name}.{ns}.svc.cluster.local"),
    ]
}
