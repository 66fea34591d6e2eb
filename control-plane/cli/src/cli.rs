//! The `outrigger` binary's command line (clap). Part of the binary, not the library:
//! the library takes typed configs ([`ServeConfig`]), never flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use outrigger_api::parse_duration;
use outrigger_certs::DEFAULT_TRUST_DOMAIN;
use outrigger_control_plane::inject::InjectConfig;
use outrigger_control_plane::limits::{self, Limits};
use outrigger_control_plane::{ClusterMode, ServeConfig, proxies, registry};

#[derive(Parser)]
#[command(
    name = "outrigger",
    version,
    about = "Outrigger service mesh: control plane and CLI"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Manage the mesh CA.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Manage bootstrap tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Revoke an identity: every token and certificate issued for it until now is
    /// refused (new certificates, renewals, watches, registrations), its open watches are
    /// cut and its instances leave their services. A token created afterwards works.
    Revoke(RevokeArgs),
    /// Run the control plane: certificate API, config stream, health and metrics.
    ControlPlane(Box<ControlPlaneArgs>),
    /// Run a whole mesh on loopback: control plane, two services with sidecars, traffic.
    Demo(DemoArgs),
    /// Validate policy files (files or directories, read as one set): print every error
    /// as file:line: field: message; exit 1 if any.
    Check(CheckArgs),
    /// Show the proxies the control plane knows and whether they run the current config;
    /// exit 0 if converged, 2 if not, 1 if the control plane cannot be asked.
    Status(StatusArgs),
    /// Show the mesh's golden metrics (request rate, success rate, latency percentiles
    /// exact across sidecars) per service, or per caller→service edge.
    Stat(StatArgs),
    /// Write the CustomResourceDefinitions of MeshService, TrafficPolicy and ServerPolicy,
    /// generated from the Rust types (into --dir, or to stdout).
    Crds(CrdsArgs),
    /// Add the sidecar to the pods of Kubernetes manifests (Deployments, StatefulSets,
    /// DaemonSets, ReplicaSets, Jobs, CronJobs, Pods, Lists); every other kind passes
    /// through unchanged.
    Inject(InjectArgs),
}

#[derive(Args)]
pub(crate) struct CrdsArgs {
    /// Write one file per CRD here (k8s/crds) instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct InjectArgs {
    /// The manifests to inject: a file, or `-` for stdin.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,
    /// The control plane's API address the proxies call.
    #[arg(long, default_value = outrigger_control_plane::inject::DEFAULT_CONTROL_PLANE)]
    pub control_plane: String,
    /// The proxy image (a pod's `outrigger.dev/proxy-image` annotation wins).
    #[arg(long, default_value = outrigger_control_plane::inject::DEFAULT_PROXY_IMAGE)]
    pub proxy_image: String,
}

#[derive(Args)]
pub(crate) struct StatusArgs {
    /// The control plane's plain-HTTP address (its --http).
    #[arg(long, env = "OUTRIGGER_HTTP", default_value = "127.0.0.1:8080")]
    pub http: String,
}

#[derive(Args)]
pub(crate) struct StatArgs {
    /// Only this service (`name.namespace`, `namespace/name`, or `name`).
    pub service: Option<String>,
    /// One row per caller→service edge instead of per service.
    #[arg(long)]
    pub edges: bool,
    /// The time the numbers cover.
    #[arg(long, default_value = "1m", value_parser = ["1m", "5m", "15m"])]
    pub window: String,
    /// Redraw the table in place every --interval until Ctrl-C.
    #[arg(long)]
    pub watch: bool,
    /// Time between two redraws with --watch.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub interval: Duration,
    /// The control plane's plain-HTTP address (its --http).
    #[arg(long, env = "OUTRIGGER_HTTP", default_value = "127.0.0.1:8080")]
    pub http: String,
}

#[derive(Args)]
pub(crate) struct CheckArgs {
    /// Policy files or directories (read recursively: *.yaml, *.yml).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// The trust domain identities must be in (the CA's, in the control plane).
    #[arg(long, default_value = DEFAULT_TRUST_DOMAIN)]
    pub trust_domain: String,
}

#[derive(Args)]
pub(crate) struct DemoArgs {
    /// Requests to send from orders to payments for the report.
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
    /// Exit after the report instead of running until Ctrl-C.
    #[arg(long)]
    pub once: bool,
    /// Use any free ports instead of 8443/8080/4140/4143/4191/... (if those are taken).
    #[arg(long)]
    pub any_ports: bool,
}

#[derive(Subcommand)]
pub(crate) enum CaCommand {
    /// Create the trust anchor, the issuer and the token key in DATA_DIR/ca.
    Init(CaInitArgs),
    /// Replace the trust anchor with no restart and no failed request, in three steps:
    /// start, issuer, finish (a running control plane picks each one up).
    #[command(subcommand)]
    Rotate(RotateCommand),
}

#[derive(Subcommand)]
pub(crate) enum RotateCommand {
    /// Make the next trust anchor and its issuer (DATA_DIR/ca/next); the bundle pushed
    /// to every sidecar becomes the current anchor plus the next one.
    Start(RotateArgs),
    /// Sign every new certificate with the next issuer (run once every sidecar has the
    /// two-anchor bundle: `outrigger status` converged).
    Issuer(RotateArgs),
    /// Make the next anchor the only one, once no certificate of the old issuer can
    /// still be valid.
    Finish(RotateFinishArgs),
}

#[derive(Args)]
pub(crate) struct RotateArgs {
    #[arg(long, env = "OUTRIGGER_DATA_DIR")]
    pub data_dir: PathBuf,
}

#[derive(Args)]
pub(crate) struct RotateFinishArgs {
    #[arg(long, env = "OUTRIGGER_DATA_DIR")]
    pub data_dir: PathBuf,
    /// The control plane's --cert-ttl: how long a certificate of the old issuer may live.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub cert_ttl: Duration,
    /// Remove the old anchor even though certificates signed under it may still be
    /// valid (their holders then fail to connect until they renew).
    #[arg(long)]
    pub force: bool,
}

#[derive(Subcommand)]
pub(crate) enum TokenCommand {
    /// Print a bootstrap token for one identity (and nothing else) on stdout.
    Create(TokenCreateArgs),
}

#[derive(Args)]
pub(crate) struct CaInitArgs {
    #[arg(long, env = "OUTRIGGER_DATA_DIR")]
    pub data_dir: PathBuf,
    #[arg(long, default_value = DEFAULT_TRUST_DOMAIN)]
    pub trust_domain: String,
}

#[derive(Args)]
pub(crate) struct TokenCreateArgs {
    #[arg(long, env = "OUTRIGGER_DATA_DIR")]
    pub data_dir: PathBuf,
    /// NAMESPACE/SERVICE-ACCOUNT.
    #[arg(long)]
    pub identity: String,
    /// How long the token can be used (e.g. 10m, 1h).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub ttl: Duration,
}

#[derive(Args)]
pub(crate) struct RevokeArgs {
    #[arg(long, env = "OUTRIGGER_DATA_DIR")]
    pub data_dir: PathBuf,
    /// NAMESPACE/SERVICE-ACCOUNT.
    #[arg(long)]
    pub identity: String,
}

#[derive(Args)]
pub(crate) struct ControlPlaneArgs {
    #[arg(long, env = "OUTRIGGER_DATA_DIR")]
    pub data_dir: PathBuf,
    /// The policy files to serve (file mode; not read with --kubernetes).
    #[arg(
        long,
        env = "OUTRIGGER_POLICY_DIR",
        required_unless_present = "kubernetes"
    )]
    pub policy_dir: Option<PathBuf>,
    /// Cluster mode: read MeshServices, policies, Services and EndpointSlices from the
    /// API server, keep the CA in a Secret (made on the first start), check
    /// service-account tokens with TokenReview.
    #[arg(long)]
    pub kubernetes: bool,
    /// Cluster mode: the control plane's namespace, which holds the CA Secret.
    #[arg(long, env = "POD_NAMESPACE", default_value = "outrigger")]
    pub namespace: String,
    /// Cluster mode: the Secret that holds the CA.
    #[arg(long, default_value = "outrigger-ca")]
    pub ca_secret: String,
    /// Cluster mode: the trust domain of the CA made on the first start.
    #[arg(long, default_value = DEFAULT_TRUST_DOMAIN)]
    pub trust_domain: String,
    /// Cluster mode: the MutatingWebhookConfiguration whose caBundle this replica keeps
    /// equal to the trust anchors (empty: leave it alone).
    #[arg(long, default_value = "outrigger-proxy-injector")]
    pub webhook_config: String,
    /// Cluster mode: this replica's pod name (the Lease holder); default $HOSTNAME.
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// Cluster mode: the control plane's Service, whose EndpointSlices list the replicas.
    #[arg(long, default_value = "outrigger-control-plane")]
    pub service: String,
    /// Cluster mode: the Lease whose holder writes the CRDs' status.
    #[arg(long, default_value = "outrigger-control-plane-status")]
    pub status_lease: String,
    /// A DNS name for the serving certificate besides its SPIFFE id (repeatable): the
    /// names the API server calls the webhook by, `<service>.<namespace>.svc[.cluster.local]`.
    #[arg(long = "serving-dns-name", value_name = "NAME")]
    pub serving_dns_names: Vec<String>,
    /// HTTPS API for sidecars.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Plain HTTP: /live, /ready, /metrics.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// Lifetime of issued certificates (renewed at 70%).
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub cert_ttl: Duration,
    /// A registered app instance leaves its service's endpoints when its sidecar sends no
    /// heartbeat (POST /v1/register) for this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub registration_ttl: Duration,
    /// After a start, hold back config streams this long so that registered instances
    /// heartbeat back in first (sidecars keep their last config meanwhile). Set it above
    /// the sidecars' heartbeat interval.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub registration_warmup: Duration,
    /// Length of one window of the merged latency statistics (/api/stats keeps 90).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub stats_window: Duration,
    /// Memory the statistics' windows may take, in MiB; above it the oldest windows are
    /// dropped first (history gets shorter, the latest numbers stay exact).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub stats_max_mib: u32,
    /// Open connections to the API port at most; one more is closed as soon as it is
    /// accepted (docs/control-plane-limits.md).
    #[arg(long, default_value_t = limits::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// A watch stream whose next line cannot be written for this long (the proxy has
    /// stopped reading) is cut.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub watch_stall_timeout: Duration,
    /// Registered instances one service may have; a new one beyond is refused (429).
    #[arg(long, default_value_t = registry::DEFAULT_MAX_INSTANCES_PER_SERVICE)]
    pub max_instances_per_service: usize,
    /// Proxies (by proxy id) one identity may have known at once; a new one beyond is
    /// refused (429).
    #[arg(long, default_value_t = proxies::DEFAULT_MAX_PER_IDENTITY)]
    pub max_proxies_per_identity: usize,
    /// The proxy image the admission webhook injects.
    #[arg(long, env = "OUTRIGGER_PROXY_IMAGE", default_value = outrigger_control_plane::inject::DEFAULT_PROXY_IMAGE)]
    pub proxy_image: String,
    /// The control-plane address injected proxies call (its Service).
    #[arg(long, default_value = outrigger_control_plane::inject::DEFAULT_CONTROL_PLANE)]
    pub inject_control_plane: String,
}

impl ControlPlaneArgs {
    pub(crate) fn into_config(self) -> ServeConfig {
        ServeConfig {
            listen: self.listen,
            http: self.http,
            cert_ttl: self.cert_ttl,
            registration_ttl: self.registration_ttl,
            registration_warmup: self.registration_warmup,
            stats_window: self.stats_window,
            stats_max_bytes: (self.stats_max_mib as usize) << 20,
            inject: InjectConfig {
                control_plane: self.inject_control_plane,
                proxy_image: self.proxy_image,
                ..InjectConfig::default()
            },
            serving_dns_names: self.serving_dns_names,
            limits: Limits {
                max_connections: self.max_connections,
                watch_stall_timeout: self.watch_stall_timeout,
                max_instances_per_service: self.max_instances_per_service,
                max_proxies_per_identity: self.max_proxies_per_identity,
            },
            kubernetes: self.kubernetes.then(|| ClusterMode {
                client: None,
                namespace: self.namespace,
                ca_secret: self.ca_secret,
                trust_domain: self.trust_domain,
                webhook: Some(self.webhook_config).filter(|w| !w.is_empty()),
                // In a pod, HOSTNAME is the pod's name.
                replica: self
                    .pod_name
                    .or_else(|| std::env::var("HOSTNAME").ok())
                    .unwrap_or_else(|| "outrigger-control-plane".into()),
                service: self.service,
                status_lease: self.status_lease,
            }),
            ..ServeConfig::new(self.data_dir, self.policy_dir.unwrap_or_default())
        }
    }
}
