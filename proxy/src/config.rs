//! The proxy's configuration: environment variables, each with a flag equivalent, parsed
//! once at start into strong types. A bad value is named with its variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

pub(crate) mod http_limits;
mod trace_settings;
pub use http_limits::HttpLimits;
pub use trace_settings::{AccessLogFormat, TraceSettings};

/// Outrigger sidecar proxy.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "outrigger-proxy",
    version,
    about,
    after_help = "In a pod, `outrigger-proxy init` writes the iptables rules that send its TCP \
                  through the proxy: see `outrigger-proxy init --help`."
)]
pub struct Config {
    /// Control plane API address (`host:port`, `https://` optional).
    #[arg(
        long,
        env = "OUTRIGGER_CONTROL_PLANE",
        default_value = "127.0.0.1:8443"
    )]
    pub control_plane: String,

    /// PEM file with the mesh's trust anchors (from `outrigger ca init`).
    #[arg(long, env = "OUTRIGGER_TRUST_ANCHORS")]
    pub trust_anchors: PathBuf,

    /// File holding the bootstrap token (from `outrigger token create`).
    #[arg(long, env = "OUTRIGGER_TOKEN_FILE")]
    pub token_file: PathBuf,

    /// Trust domain of the mesh; the control plane must present
    /// `spiffe://<trust-domain>/ns/outrigger/sa/control-plane`.
    #[arg(long, env = "OUTRIGGER_TRUST_DOMAIN", default_value = "cluster.local")]
    pub trust_domain: String,

    /// The MeshService this proxy's app is an instance of (`name` or `namespace/name`;
    /// the namespace defaults to the one in the proxy's identity). When set, with an app
    /// address, the instance registers itself with the control plane.
    #[arg(long, env = "OUTRIGGER_SERVICE")]
    pub service: Option<String>,

    /// Where peers reach this sidecar's inbound port, as registered. Defaults to the
    /// inbound address, or 127.0.0.1 with its port when that is 0.0.0.0.
    #[arg(long, env = "OUTRIGGER_ADVERTISE_ADDR")]
    pub advertise_addr: Option<SocketAddr>,

    /// HTTP path of the app's health check (e.g. `/health`); without it the app counts
    /// as healthy while the proxy runs.
    #[arg(long, env = "OUTRIGGER_APP_HEALTH")]
    pub app_health: Option<String>,

    /// Time between two health checks of the app.
    #[arg(long, env = "OUTRIGGER_APP_HEALTH_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub app_health_interval: Duration,

    /// A health check not answered 2xx within this long fails.
    #[arg(long, env = "OUTRIGGER_APP_HEALTH_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub app_health_timeout: Duration,

    /// Consecutive failed checks that make a healthy app unhealthy.
    #[arg(long, env = "OUTRIGGER_APP_HEALTH_FAILURES", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub app_health_failures: u32,

    /// Consecutive passed checks that make an unhealthy app healthy again.
    #[arg(long, env = "OUTRIGGER_APP_HEALTH_SUCCESSES", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub app_health_successes: u32,

    /// Time between two heartbeats to the control plane (registration, applied version).
    #[arg(long, env = "OUTRIGGER_HEARTBEAT_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,

    /// Time between two shipments of latency and resilience statistics to the control
    /// plane (`POST /v1/stats`).
    #[arg(long, env = "OUTRIGGER_STATS_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub stats_interval: Duration,

    /// Where the local app listens; inbound requests go there.
    #[arg(long, env = "OUTRIGGER_APP_ADDR")]
    pub app_addr: Option<SocketAddr>,

    /// How to speak to the app: `auto` (as the caller spoke), `http1` or `http2`.
    #[arg(long, env = "OUTRIGGER_APP_PROTOCOL", default_value = "auto")]
    pub app_protocol: AppProtocol,

    /// Inbound listener: mTLS from other sidecars.
    #[arg(long, env = "OUTRIGGER_INBOUND_ADDR", default_value = "0.0.0.0:4143")]
    pub inbound_addr: SocketAddr,

    /// Outbound listener: plain HTTP from the local app.
    #[arg(
        long,
        env = "OUTRIGGER_OUTBOUND_ADDR",
        default_value = "127.0.0.1:4140"
    )]
    pub outbound_addr: SocketAddr,

    /// Admin listener: /live, /ready, /metrics, /config.
    #[arg(long, env = "OUTRIGGER_ADMIN_ADDR", default_value = "127.0.0.1:4191")]
    pub admin_addr: SocketAddr,

    /// Worker threads. One by default: a sidecar's budget is a slice of one core.
    #[arg(long, env = "OUTRIGGER_WORKERS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub workers: u16,

    /// Connect timeout towards peers and the app.
    #[arg(long, env = "OUTRIGGER_CONNECT_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// A called service's runtime state (connections, balancer, breakers, metrics) is
    /// dropped after it has carried no request for this long, and rebuilt on the next.
    #[arg(long, env = "OUTRIGGER_TARGET_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub target_idle_timeout: Duration,

    /// How long protocol detection waits for a client's first bytes before treating the
    /// connection as opaque TCP.
    #[arg(long, env = "OUTRIGGER_DETECT_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub detect_timeout: Duration,

    /// Ports whose connections are opaque TCP without detection: server-first protocols
    /// (SMTP, MySQL, PostgreSQL, Redis, ...) whose clients wait for the server to speak.
    #[arg(
        long,
        env = "OUTRIGGER_OPAQUE_PORTS",
        value_delimiter = ',',
        default_value = "25,587,3306,4444,5432,6379,9300,11211"
    )]
    pub opaque_ports: Vec<u16>,

    /// How long SIGTERM waits for in-flight requests before exiting anyway.
    #[arg(long, env = "OUTRIGGER_SHUTDOWN_GRACE", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// What the HTTP listeners accept from a client.
    #[command(flatten)]
    pub limits: HttpLimits,

    /// The access log and span export.
    #[command(flatten)]
    pub trace: TraceSettings,
}

/// How the inbound side speaks to the app.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AppProtocol {
    /// The protocol the calling app used (carried across the mesh hop).
    Auto,
    Http1,
    Http2,
}

/// `name` or `namespace/name` → (namespace, name).
pub fn qualify_service(service: &str, default_namespace: &str) -> (String, String) {
    match service.split_once('/') {
        Some((ns, name)) => (ns.to_string(), name.to_string()),
        None => (default_namespace.to_string(), service.to_string()),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    outrigger_api::parse_duration(s).map_err(|e| e.to_string())
}

impl Config {
    /// One line saying what is wrong with the configuration, naming both the flag and the
    /// environment variable (clap alone names only the flag, over several lines).
    pub fn explain(error: &clap::Error) -> String {
        use clap::CommandFactory;
        let text = error.render().to_string();
        let command = Config::command();
        let named: Vec<String> = command
            .get_arguments()
            .filter_map(|arg| {
                let long = arg.get_long()?;
                let env = arg.get_env()?.to_str()?;
                text.contains(&format!("--{long} <"))
                    .then(|| format!("--{long} / {env}"))
            })
            .collect();
        if error.kind() == clap::error::ErrorKind::MissingRequiredArgument {
            return format!("missing required setting: {}", named.join(", "));
        }
        let first = text.lines().next().unwrap_or_default();
        let first = first.strip_prefix("error: ").unwrap_or(first);
        if named.is_empty() {
            first.to_string()
        } else {
            format!("{first} (set by {})", named.join(", "))
        }
    }

    /// The service this proxy serves as (namespace, name); the namespace falls back to
    /// `default_namespace` (the proxy identity's).
    pub fn service_ref(&self, default_namespace: &str) -> Option<(String, String)> {
        Some(qualify_service(self.service.as_deref()?, default_namespace))
    }

    /// The inbound address peers should use.
    pub fn advertised_inbound(&self, bound: SocketAddr) -> SocketAddr {
        if let Some(addr) = self.advertise_addr {
            return addr;
        }
        if bound.ip().is_unspecified() {
            return SocketAddr::from(([127, 0, 0, 1], bound.port()));
        }
        bound
    }

    /// `host:port` of the control plane, without any scheme.
    pub fn control_plane_authority(&self) -> &str {
        let cp = self.control_plane.as_str();
        cp.strip_prefix("https://")
            .unwrap_or(cp)
            .trim_end_matches('/')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_design() {
        let config = Config::try_parse_from([
            "outrigger-proxy",
            "--trust-anchors",
            "ta.pem",
            "--token-file",
            "token",
        ])
        .unwrap();
        assert_eq!(config.inbound_addr.to_string(), "0.0.0.0:4143");
        assert_eq!(config.outbound_addr.to_string(), "127.0.0.1:4140");
        assert_eq!(config.admin_addr.to_string(), "127.0.0.1:4191");
        assert_eq!(config.workers, 1);
        assert_eq!(config.connect_timeout, Duration::from_secs(1));
        assert_eq!(config.stats_interval, Duration::from_secs(10));
    }

    #[test]
    fn refuses_bad_values() {
        for (flag, value) in [
            ("--admin-addr", "localhost"),
            ("--workers", "0"),
            ("--connect-timeout", "5"),
            ("--app-protocol", "spdy"),
        ] {
            let parsed = Config::try_parse_from([
                "outrigger-proxy",
                "--trust-anchors",
                "ta.pem",
                "--token-file",
                "t",
                flag,
                value,
            ]);
            assert!(parsed.is_err(), "{flag} {value}");
        }
    }

    #[test]
    fn explains_errors_with_the_environment_variable() {
        let error = Config::try_parse_from([
            "p",
            "--trust-anchors",
            "a",
            "--token-file",
            "t",
            "--admin-addr",
            "x",
        ])
        .unwrap_err();
        let line = Config::explain(&error);
        assert!(line.contains("OUTRIGGER_ADMIN_ADDR"), "{line}");
        assert!(!line.contains('\n'), "{line}");
        let missing = Config::explain(&Config::try_parse_from(["p"]).unwrap_err());
        assert!(
            missing.contains("OUTRIGGER_TRUST_ANCHORS") && missing.contains("OUTRIGGER_TOKEN_FILE"),
            "{missing}"
        );
    }

    #[test]
    fn service_and_advertised_address() {
        let mut config =
            Config::try_parse_from(["p", "--trust-anchors", "a", "--token-file", "t"]).unwrap();
        assert_eq!(config.service_ref("shop"), None);
        config.service = Some("payments".into());
        assert_eq!(
            config.service_ref("shop"),
            Some(("shop".into(), "payments".into()))
        );
        config.service = Some("billing/payments".into());
        assert_eq!(
            config.service_ref("shop"),
            Some(("billing".into(), "payments".into()))
        );
        let bound: SocketAddr = "0.0.0.0:4143".parse().unwrap();
        assert_eq!(
            config.advertised_inbound(bound).to_string(),
            "127.0.0.1:4143"
        );
        config.advertise_addr = Some("10.1.2.3:4143".parse().unwrap());
        assert_eq!(
            config.advertised_inbound(bound).to_string(),
            "10.1.2.3:4143"
        );
    }

    #[test]
    fn control_plane_scheme_is_optional() {
        let mut config =
            Config::try_parse_from(["p", "--trust-anchors", "a", "--token-file", "t"]).unwrap();
        config.control_plane = "https://cp.example:8443/".into();
        assert_eq!(config.control_plane_authority(), "cp.example:8443");
    }
}
