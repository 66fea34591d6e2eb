//! The control-plane server: the HTTPS API for sidecars (`--listen`) and the plain-HTTP
//! port for health and metrics (`--http`). [`Server::bind`] loads everything and binds
//! both sockets, so that every start-up error surfaces before anything is served;
//! [`Server::run`] serves until the given shutdown future completes, then drains.

mod accept;
mod admin;
mod admission;
mod api;
mod api_error;
mod authn;
mod body;
mod ca_reload;
mod certificates;
mod config;
mod conn;
mod conn_cap;
mod dashboard;
mod error;
mod query;
mod refusal;
mod register;
mod request_body;
mod revocation_reload;
mod serving_cert;
mod stats_ingest;
mod watch;
mod watch_send;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use outrigger_certs::{Ca, CaPaths, CertStore, SpiffeId};
use tokio::net::TcpListener;
use tokio::sync::watch as watch_channel;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

pub use config::{ClusterMode, ServeConfig};
use conn_cap::ConnectionCap;
pub use error::ServeError;
use refusal::RefusalKey;
pub use serving_cert::control_plane_identity;

use crate::inject::InjectConfig;
use crate::kubernetes::convergence::LocalConvergence;
use crate::kubernetes::lease::{self, Elector, LeaseConfig};
use crate::kubernetes::peers::Peers;
use crate::kubernetes::status_writer::{self, StatusWriter};
use crate::kubernetes::{
    ClusterFeed, ClusterHealth, TokenReviewer, WATCHED, ca_secret, webhook_ca,
};
use crate::limits::Limits;
use crate::log_throttle::LogThrottle;
use crate::metrics::Metrics;
use crate::policy;
use crate::proxies::Proxies;
use crate::registry::Registry;
use crate::reload::{self, ConfigHealth, Reloader};
use crate::revocation::Revocations;
use crate::snapshot::SnapshotPublisher;
use crate::stats::StatsStore;
use crate::token::TokenKey;
use crate::watchers::Watchers;

/// How long shutdown waits for in-flight requests before closing what is left.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// A refusal line per (endpoint, reason, caller) this often at most, and this many
/// (endpoint, reason, caller) keys held: at most that many refusal lines per period.
const REFUSAL_LOG_PERIOD: Duration = Duration::from_secs(10);
const REFUSAL_LOG_KEYS: usize = 1_024;

/// What every connection's handlers share.
pub(crate) struct Shared {
    /// Replaced when the CA on disk changes (trust-anchor rotation).
    ca: watch_channel::Sender<Arc<Ca>>,
    tokens: TokenKey,
    cert_ttl: Duration,
    metrics: Arc<Metrics>,
    watchers: Arc<Watchers>,
    snapshots: SnapshotPublisher,
    /// Whether the policy files on disk are valid now (the last reload's errors).
    health: Arc<ConfigHealth>,
    registry: Arc<Registry>,
    /// Which proxy runs which version, for `/api/status`.
    proxies: Arc<Proxies>,
    /// Turns true when shutdown begins: ends watch streams and background tasks.
    stopping: watch_channel::Receiver<bool>,
    ready: AtomicBool,
    /// Until when watch streams hold back their first snapshot (see `registration_warmup`).
    warm_until: tokio::time::Instant,
    /// For `/v1/admission`.
    inject: InjectConfig,
    /// Cluster mode: why the cluster's state is not fully known (`/ready`).
    cluster_health: Option<Arc<ClusterHealth>>,
    /// Cluster mode: checks service-account tokens.
    token_review: Option<TokenReviewer>,
    /// Cluster mode: this replica's convergence counts (`/api/convergence`).
    convergence: Option<Arc<LocalConvergence>>,
    /// The sidecars' merged statistics (`/v1/stats` in, `/api/stats` out).
    stats: StatsStore,
    /// What one client may take (the watch stall timeout is read per stream).
    limits: Limits,
    /// Revoked identities, replaced when `ca/revoked` changes; watch streams follow it.
    revocations: watch_channel::Sender<Arc<Revocations>>,
    /// One warning per (endpoint, reason, caller) per period.
    refusal_log: LogThrottle<RefusalKey>,
    /// Open API connections, at most `--max-connections`.
    api_connections: ConnectionCap,
}

/// What cluster mode runs beside the servers.
struct ClusterRun {
    feed: Arc<ClusterFeed>,
    client: kube::Client,
    changes: tokio::sync::mpsc::Receiver<()>,
    /// The MutatingWebhookConfiguration to keep the caBundle of.
    webhook: Option<String>,
    /// Who writes the CRDs' status, and how it finds the other replicas.
    lease: LeaseConfig,
    service: String,
}

/// Who is on the other end of one API connection.
pub(crate) struct ConnInfo {
    peer: SocketAddr,
    /// From the client certificate, if one was presented (and so verified).
    identity: Option<SpiffeId>,
    /// When that certificate was issued (Unix seconds), for revocations.
    issued_at: i64,
    /// Notified to close the connection (a watch stream cut by the control plane).
    cut: Arc<tokio::sync::Notify>,
}

/// A control plane with its CA, policy and sockets ready; not serving until [`Server::run`].
pub struct Server {
    shared: Arc<Shared>,
    api: TcpListener,
    http: TcpListener,
    api_addr: SocketAddr,
    http_addr: SocketAddr,
    /// Replaced when the trust bundle changes; each accepted connection takes the latest.
    tls: watch_channel::Sender<TlsAcceptor>,
    certs: Arc<CertStore>,
    cert_not_after: i64,
    stop: watch_channel::Sender<bool>,
    reloader: Reloader,
    /// File mode: the policy dir's watcher.
    policy_watch: Option<(notify::RecommendedWatcher, tokio::sync::mpsc::Receiver<()>)>,
    /// Cluster mode: the watchers' feed, its client and its wake-ups.
    cluster: Option<ClusterRun>,
    serving_dns_names: Vec<String>,
    data_dir: PathBuf,
    ca_watch: (notify::RecommendedWatcher, tokio::sync::mpsc::Receiver<()>),
    revocations_watch: (notify::RecommendedWatcher, tokio::sync::mpsc::Receiver<()>),
}

impl Server {
    /// Loads the CA, the token key and the policy dir, issues the serving certificate,
    /// and binds both sockets.
    pub async fn bind(config: ServeConfig) -> Result<Server, ServeError> {
        if config.registration_ttl < Duration::from_millis(100) {
            return Err(ServeError::Config(format!(
                "registration TTL {:?} is too short (at least 100ms)",
                config.registration_ttl
            )));
        }
        if config.cert_ttl < Duration::from_secs(1) {
            return Err(ServeError::Config(format!(
                "certificate TTL {:?} is too short (at least 1s)",
                config.cert_ttl
            )));
        }
        config.limits.check().map_err(ServeError::Config)?;
        let client = match &config.kubernetes {
            Some(cluster) => Some(cluster_client(cluster, &config.data_dir).await?),
            None => None,
        };
        let ca = Arc::new(Ca::load(&config.data_dir).map_err(ServeError::Ca)?);
        let tokens = TokenKey::load(&config.data_dir)?;
        let revocations = Revocations::load(&config.data_dir)
            .map_err(|e| ServeError::Config(format!("cannot read the revoked identities: {e}")))?;
        let td = ca.trust_domain().to_string();
        let inject = InjectConfig {
            trust_domain: td.clone(),
            ..config.inject.clone()
        };
        // Watching first: a change made while the dir is read is not missed.
        let policy_watch = match client {
            Some(_) => None,
            None => Some(reload::watch_dir(&config.policy_dir).map_err(|e| {
                ServeError::Config(format!(
                    "cannot watch the policy dir {} for changes: {e}",
                    config.policy_dir.display()
                ))
            })?),
        };
        let ca_dir = CaPaths::new(&config.data_dir).dir().to_path_buf();
        let watch_ca_dir = || {
            reload::watch_dir_for(&ca_dir, "the CA dir").map_err(|e| {
                ServeError::Config(format!(
                    "cannot watch the CA dir {} for changes: {e}",
                    ca_dir.display()
                ))
            })
        };
        let ca_watch = watch_ca_dir()?;
        // Its own watcher: the revocations reload on their own, apart from the CA.
        let revocations_watch = watch_ca_dir()?;
        // The first load fills the cache that later reloads parse against.
        let mut files = policy::FileCache::default();
        let policy = match client {
            // The cluster's policy is published once every watch has listed.
            Some(_) => policy::Policy::default(),
            None => {
                let policy = policy::check_paths_cached(
                    std::slice::from_ref(&config.policy_dir),
                    &td,
                    &mut files,
                )
                .result?;
                info!(
                    services = policy.services.len(),
                    traffic_policies = policy
                        .services
                        .iter()
                        .filter(|s| s.traffic_policy.is_some())
                        .count(),
                    server_policies = policy.server_policies.len(),
                    "loaded policy from {}",
                    config.policy_dir.display()
                );
                policy
            }
        };

        let certs = CertStore::new();
        let cert_not_after =
            serving_cert::issue(&ca, config.cert_ttl, &config.serving_dns_names, &certs)
                .map_err(ServeError::ServingCert)?;
        let tls = ca_reload::api_tls(&ca, certs.clone()).map_err(ServeError::ServingCert)?;

        let (api, api_addr) = accept::bind(config.listen, "API, --listen").await?;
        let (http, http_addr) = accept::bind(config.http, "HTTP, --http").await?;
        info!("control-plane API listening on https://{api_addr}");
        info!("health and metrics listening on http://{http_addr}");

        let (stop, stopping) = watch_channel::channel(false);
        let snapshots = SnapshotPublisher::new(ca.trust_bundle_pem().to_string(), policy);
        let metrics = Arc::new(Metrics::default());
        let health = Arc::new(ConfigHealth::default());
        let reloader = Reloader {
            dir: config.policy_dir.clone(),
            trust_domain: td.clone(),
            publisher: snapshots.clone(),
            health: health.clone(),
            metrics: metrics.clone(),
            files: Arc::new(std::sync::Mutex::new(files)),
        };
        let registry = Registry::new(
            config.registration_ttl,
            config.limits.max_instances_per_service,
            snapshots.clone(),
        );
        let cluster_health = client.as_ref().map(|_| ClusterHealth::new(&WATCHED));
        let token_review = client.as_ref().map(|c| TokenReviewer::new(c.clone(), &td));
        let proxies = Proxies::with_max_per_identity(config.limits.max_proxies_per_identity);
        let cluster = match (&client, &cluster_health, &config.kubernetes) {
            (Some(client), Some(cluster_health), Some(mode)) => {
                let (feed, changes) = ClusterFeed::new(
                    &td,
                    snapshots.clone(),
                    health.clone(),
                    cluster_health.clone(),
                );
                Some(ClusterRun {
                    feed,
                    client: client.clone(),
                    changes,
                    webhook: mode.webhook.clone(),
                    lease: LeaseConfig::new(&mode.namespace, &mode.status_lease, &mode.replica),
                    service: mode.service.clone(),
                })
            }
            _ => None,
        };
        let convergence = cluster.as_ref().map(|c| {
            Arc::new(LocalConvergence {
                replica: c.lease.holder.clone(),
                feed: c.feed.clone(),
                proxies: proxies.clone(),
            })
        });
        let shared = Arc::new(Shared {
            registry,
            proxies,
            snapshots,
            ca: watch_channel::Sender::new(ca),
            tokens,
            cert_ttl: config.cert_ttl,
            watchers: Watchers::new(),
            health,
            stopping,
            ready: AtomicBool::new(false),
            warm_until: tokio::time::Instant::now() + config.registration_warmup,
            inject,
            cluster_health,
            token_review,
            convergence,
            stats: StatsStore::new(
                config.stats_window,
                config.stats_max_series,
                config.stats_max_bytes,
            ),
            api_connections: ConnectionCap::new(
                "API",
                config.limits.max_connections,
                Some(metrics.clone()),
            ),
            metrics,
            limits: config.limits,
            revocations: watch_channel::Sender::new(Arc::new(revocations)),
            refusal_log: LogThrottle::new(REFUSAL_LOG_PERIOD, REFUSAL_LOG_KEYS),
        });
        Ok(Server {
            shared,
            api,
            http,
            api_addr,
            http_addr,
            tls: watch_channel::Sender::new(tls),
            certs,
            cert_not_after,
            stop,
            reloader,
            policy_watch,
            cluster,
            serving_dns_names: config.serving_dns_names,
            data_dir: config.data_dir,
            ca_watch,
            revocations_watch,
        })
    }

    /// The bound API address (the real port when 0 was asked for).
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// The bound plain-HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The identity the API presents; what clients must expect.
    pub fn identity(&self) -> Result<SpiffeId, outrigger_certs::SpiffeIdError> {
        control_plane_identity(self.shared.ca.borrow().trust_domain())
    }

    /// Reloads the policy dir now, as a change on disk does.
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// Publishes new configuration to every watcher.
    pub fn publisher(&self) -> SnapshotPublisher {
        self.shared.snapshots.clone()
    }

    /// The proxies connected to the config stream.
    pub fn watchers(&self) -> Arc<Watchers> {
        self.shared.watchers.clone()
    }

    /// Serves until `shutdown` completes; then stops accepting, ends watch streams,
    /// lets in-flight requests finish (for up to 10s) and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        let Server {
            shared,
            api,
            http,
            tls,
            certs,
            cert_not_after,
            stop,
            reloader,
            policy_watch,
            cluster,
            serving_dns_names,
            data_dir,
            ca_watch: (ca_watcher, ca_changes),
            revocations_watch: (revocations_watcher, revocations_changes),
            ..
        } = self;
        let expiring = tokio::spawn(shared.registry.clone().run_expiry(shared.stopping.clone()));
        // Cluster mode: the status Lease's election, awaited at shutdown so that its
        // holder can release it.
        let mut electing = None;
        let reloading = match policy_watch {
            Some((watcher, changes)) => tokio::spawn(reload::run(
                reloader,
                watcher,
                changes,
                shared.stopping.clone(),
            )),
            None => {
                let ClusterRun {
                    feed,
                    client,
                    changes,
                    webhook,
                    lease,
                    service,
                } = cluster.expect("cluster mode when there is no policy dir");
                let (leading, leadership) = watch_channel::channel(false);
                let peers = Peers::new(client.clone(), &lease.namespace, &service, &lease.holder);
                electing = Some(tokio::spawn(lease::run(
                    Elector::new(client.clone(), lease),
                    leading,
                    shared.stopping.clone(),
                )));
                let local = shared
                    .convergence
                    .clone()
                    .expect("cluster mode counts its convergence");
                tokio::spawn(status_writer::run(
                    StatusWriter::new(client.clone()),
                    local,
                    peers,
                    leadership,
                    shared.stopping.clone(),
                ));
                if let Some(webhook) = webhook {
                    tokio::spawn(webhook_ca::keep_current(
                        client.clone(),
                        webhook,
                        shared.ca.subscribe(),
                        shared.stopping.clone(),
                    ));
                }
                tokio::spawn(feed.run(client, changes, shared.stopping.clone()))
            }
        };
        let revocations_reloading = tokio::spawn(revocation_reload::run(
            data_dir.clone(),
            shared.clone(),
            revocations_watcher,
            revocations_changes,
        ));
        let ca_reloading = tokio::spawn(
            ca_reload::CaReload {
                data_dir,
                ca: shared.ca.clone(),
                tls: tls.clone(),
                certs: certs.clone(),
                snapshots: shared.snapshots.clone(),
            }
            .run(ca_watcher, ca_changes, shared.stopping.clone()),
        );
        let renewal = tokio::spawn(serving_cert::renew(
            shared.ca.subscribe(),
            shared.cert_ttl,
            serving_dns_names,
            certs,
            cert_not_after,
            shared.stopping.clone(),
        ));
        let graceful = GracefulShutdown::new();
        shared.ready.store(true, Ordering::Release);
        info!("control plane ready");
        let mut conns = accept::until(&shared, (&api, &http), &tls, &graceful, shutdown).await;

        info!("shutting down: {} open connections", conns.len());
        shared.ready.store(false, Ordering::Release);
        drop((api, http));
        let _ = stop.send(true);
        if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
            .await
            .is_err()
        {
            warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
        }
        conns.shutdown().await;
        if let Some(electing) = electing {
            // The release has its own timeout; this one only bounds a stuck task.
            let _ = tokio::time::timeout(Duration::from_secs(5), electing).await;
        }
        renewal.abort();
        revocations_reloading.abort();
        ca_reloading.abort();
        reloading.abort();
        expiring.abort();
        info!("control plane stopped");
        Ok(())
    }
}

/// The API server's client, once the CA Secret is in the data dir.
async fn cluster_client(
    cluster: &ClusterMode,
    data_dir: &std::path::Path,
) -> Result<kube::Client, ServeError> {
    let client = match &cluster.client {
        Some(client) => client.clone(),
        None => kube::Client::try_default().await.map_err(|e| {
            ServeError::Kubernetes(format!(
                "cannot find the API server (in a pod: its service account; else KUBECONFIG): {e}"
            ))
        })?,
    };
    ca_secret::ensure(
        client.clone(),
        &cluster.namespace,
        &cluster.ca_secret,
        data_dir,
        &cluster.trust_domain,
    )
    .await
    .map_err(|e| ServeError::Kubernetes(e.to_string()))?;
    Ok(client)
}
