//! What the control plane serves, and where: its configuration (`outrigger
//! control-plane`'s flags), and what cluster mode adds to it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::inject::InjectConfig;
use crate::limits::Limits;
use crate::{registry, stats};

/// What the control plane serves, and where.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Holds `ca/` (from `outrigger ca init`).
    pub data_dir: PathBuf,
    /// The `*.yaml`/`*.yml` resources to serve.
    pub policy_dir: PathBuf,
    /// The HTTPS API for sidecars; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Plain HTTP: `/live`, `/ready`, `/metrics`; port 0 picks a free port.
    pub http: SocketAddr,
    /// Lifetime of the certificates issued, the control plane's own included.
    pub cert_ttl: Duration,
    /// A registered instance leaves its service's endpoints when no heartbeat comes
    /// within this long.
    pub registration_ttl: Duration,
    /// After a start, watch streams wait this long before their first snapshot, so that
    /// registered instances heartbeat back in first: the registry lives in memory, and a
    /// proxy that reconnected at once would otherwise see those services without
    /// endpoints. Proxies keep serving their last config meanwhile.
    pub registration_warmup: Duration,
    /// What the admission webhook adds to pods (the trust domain is the CA's).
    pub inject: InjectConfig,
    /// DNS names the serving certificate carries besides the SPIFFE id: the names the
    /// Kubernetes API server calls the webhook by (`<service>.<namespace>.svc`).
    pub serving_dns_names: Vec<String>,
    /// Cluster mode: the policy, the CA and workload identities come from the API
    /// server instead of `policy_dir`, `data_dir/ca` and local tokens alone.
    pub kubernetes: Option<ClusterMode>,
    /// Length of one window of the merged latency statistics (90 are kept).
    pub stats_window: Duration,
    /// Series of statistics held at most (see `stats::StatsStore`).
    pub stats_max_series: usize,
    /// Heap the statistics' windows may take; above it the oldest go first.
    pub stats_max_bytes: usize,
    /// What one client may take (connections, stalled watches, registrations, proxies).
    pub limits: Limits,
}

/// Where cluster mode finds its API server and its CA.
#[derive(Clone)]
pub struct ClusterMode {
    /// `None`: from the environment (in a pod, its service account; else kubeconfig).
    pub client: Option<kube::Client>,
    /// The control plane's own namespace, where the CA Secret lives.
    pub namespace: String,
    /// The Secret that holds the CA.
    pub ca_secret: String,
    /// The trust domain of a CA made on the first start (an existing one keeps its own).
    pub trust_domain: String,
    /// The MutatingWebhookConfiguration whose `caBundle` this replica keeps equal to the
    /// trust anchors; `None` leaves it to the installer.
    pub webhook: Option<String>,
    /// This replica's name (its pod's): the Lease holder it writes, and how it knows
    /// itself among the endpoints of `service`.
    pub replica: String,
    /// The Service in front of the replicas, in `namespace`: its EndpointSlices list the
    /// peers whose proxies the status writer counts.
    pub service: String,
    /// The Lease, in `namespace`, whose holder writes the CRDs' status.
    pub status_lease: String,
}

impl std::fmt::Debug for ClusterMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterMode")
            .field("namespace", &self.namespace)
            .field("ca_secret", &self.ca_secret)
            .field("trust_domain", &self.trust_domain)
            .field("webhook", &self.webhook)
            .field("replica", &self.replica)
            .field("service", &self.service)
            .field("status_lease", &self.status_lease)
            .finish_non_exhaustive()
    }
}

impl ServeConfig {
    /// The defaults of `outrigger control-plane`: 127.0.0.1:8443, 127.0.0.1:8080, 24h
    /// certificates, 10s registrations.
    pub fn new(data_dir: impl Into<PathBuf>, policy_dir: impl Into<PathBuf>) -> Self {
        ServeConfig {
            data_dir: data_dir.into(),
            policy_dir: policy_dir.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            cert_ttl: Duration::from_secs(24 * 3600),
            registration_ttl: registry::DEFAULT_TTL,
            registration_warmup: Duration::from_secs(3),
            inject: InjectConfig::default(),
            serving_dns_names: Vec::new(),
            kubernetes: None,
            stats_window: stats::DEFAULT_WINDOW,
            stats_max_series: stats::DEFAULT_MAX_SERIES,
            stats_max_bytes: stats::DEFAULT_MAX_BYTES,
            limits: Limits::default(),
        }
    }
}
