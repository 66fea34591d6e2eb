//! `outrigger demo`: the whole mesh in one process, on loopback. A control plane with a
//! fresh CA in a temporary directory, two services (`orders`, `payments`) each behind its
//! own sidecar, traffic from one to the other through both sidecars over mTLS, and a
//! report of what happened. Then it keeps running, with URLs to curl, until Ctrl-C.

mod apps;
mod report;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use outrigger_certs::SpiffeId;
use outrigger_proxy::{Config as ProxyConfig, Proxy};
use tokio::net::TcpListener;
use tokio::sync::watch;

use outrigger_control_plane::{ServeConfig, ServeError, Server, TokenKey, ca_init};

/// What the demo is asked to do.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Requests sent from orders to payments for the report.
    pub requests: usize,
    /// Exit after the report instead of waiting for Ctrl-C.
    pub once: bool,
    /// Bind every port to a free one instead of the usual ones.
    pub any_ports: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}")]
    Setup(String),
    #[error("control plane: {0}")]
    ControlPlane(#[from] ServeError),
    #[error("sidecar: {0}")]
    Proxy(#[from] outrigger_proxy::Error),
}

fn setup(e: impl std::fmt::Display) -> DemoError {
    DemoError::Setup(e.to_string())
}

/// The demo's fixed ports (DESIGN.md's for the first sidecar), or 0 for "any".
struct Ports {
    control_plane: u16,
    control_plane_http: u16,
    orders: [u16; 4],   // outbound, inbound, admin, app
    payments: [u16; 4], // outbound, inbound, admin, app
}

impl Ports {
    fn new(any: bool) -> Ports {
        if any {
            // The control plane's address goes into the sidecars' config before it is
            // bound, so it needs a concrete port: take one the kernel just had free.
            let free = || {
                std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .map(|a| a.port())
                    .unwrap_or(0)
            };
            return Ports {
                control_plane: free(),
                control_plane_http: 0,
                orders: [0; 4],
                payments: [0; 4],
            };
        }
        Ports {
            control_plane: 8443,
            control_plane_http: 8080,
            orders: [4140, 4143, 4191, 8081],
            payments: [4240, 4243, 4291, 8082],
        }
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

async fn listen(port: u16, what: &str) -> Result<TcpListener, DemoError> {
    TcpListener::bind(loopback(port)).await.map_err(|e| {
        DemoError::Setup(format!(
            "cannot listen on 127.0.0.1:{port} for {what}: {e} (try --any-ports)"
        ))
    })
}

/// A sidecar's configuration, as its environment would give it.
fn sidecar_config(
    dir: &Path,
    name: &str,
    ports: [u16; 4],
    app: SocketAddr,
    control_plane: SocketAddr,
) -> Result<ProxyConfig, DemoError> {
    use clap::Parser as _;
    let path = |file: &str| dir.join(file).display().to_string();
    ProxyConfig::try_parse_from([
        "outrigger-proxy".to_string(),
        format!("--control-plane={control_plane}"),
        format!("--trust-anchors={}", path("data/ca/trust-anchor.pem")),
        format!("--token-file={}", path(&format!("{name}.token"))),
        format!("--service={name}"),
        format!("--app-addr={app}"),
        format!("--outbound-addr={}", loopback(ports[0])),
        format!("--inbound-addr={}", loopback(ports[1])),
        format!("--admin-addr={}", loopback(ports[2])),
    ])
    .map_err(|e| setup(ProxyConfig::explain(&e)))
}

fn write_policy(dir: &Path, orders: SocketAddr, payments: SocketAddr) -> Result<(), DemoError> {
    let service = |name: &str, endpoint: SocketAddr| {
        format!(
            "apiVersion: outrigger.dev/v1alpha1\nkind: MeshService\nmetadata:\n  name: {name}\n  namespace: demo\nspec:\n  identity: spiffe://cluster.local/ns/demo/sa/{name}\n  protocol: http\n  endpoints:\n    - address: {endpoint}\n"
        )
    };
    let yaml = format!(
        "{}---\n{}",
        service("orders", orders),
        service("payments", payments)
    );
    std::fs::create_dir_all(dir.join("policy")).map_err(setup)?;
    std::fs::write(dir.join("policy/services.yaml"), yaml).map_err(setup)
}

/// Runs the demo until `interrupt` resolves (or at once after the report, with `once`).
pub async fn run(
    options: DemoOptions,
    interrupt: impl Future<Output = ()>,
) -> Result<(), DemoError> {
    let tmp = tempfile::Builder::new()
        .prefix("outrigger-demo-")
        .tempdir()
        .map_err(setup)?;
    let dir = tmp.path();
    let data = dir.join("data");
    ca_init::init(&data, outrigger_certs::DEFAULT_TRUST_DOMAIN).map_err(setup)?;
    let tokens = TokenKey::load(&data).map_err(setup)?;
    let valid_until = SystemTime::now() + Duration::from_secs(3600);
    for name in ["orders", "payments"] {
        let id = SpiffeId::workload(outrigger_certs::DEFAULT_TRUST_DOMAIN, "demo", name)
            .map_err(setup)?;
        std::fs::write(
            dir.join(format!("{name}.token")),
            tokens.mint(&id, valid_until),
        )
        .map_err(setup)?;
    }

    let ports = Ports::new(options.any_ports);
    let control_plane = loopback(ports.control_plane);
    let payments_app = listen(ports.payments[3], "the payments app").await?;
    let orders_app = listen(ports.orders[3], "the orders app").await?;
    let (payments_app_addr, orders_app_addr) = (local(&payments_app), local(&orders_app));
    let payments = Proxy::bind(sidecar_config(
        dir,
        "payments",
        ports.payments,
        payments_app_addr,
        control_plane,
    )?)
    .await?;
    let orders = Proxy::bind(sidecar_config(
        dir,
        "orders",
        ports.orders,
        orders_app_addr,
        control_plane,
    )?)
    .await?;
    apps::payments(payments_app);
    apps::orders(orders_app, orders.outbound_addr());
    write_policy(dir, orders.inbound_addr(), payments.inbound_addr())?;

    let mut serve = ServeConfig::new(&data, dir.join("policy"));
    serve.listen = control_plane;
    serve.http = loopback(ports.control_plane_http);
    // A fresh mesh with static endpoints: nothing to wait for.
    serve.registration_warmup = std::time::Duration::ZERO;
    let server = Server::bind(serve).await?;
    let sites = report::Sites {
        control_plane: server.api_addr(),
        control_plane_http: server.http_addr(),
        orders: [
            orders.outbound_addr(),
            orders.inbound_addr(),
            orders.admin_addr(),
            orders_app_addr,
        ],
        payments: [
            payments.outbound_addr(),
            payments.inbound_addr(),
            payments.admin_addr(),
            payments_app_addr,
        ],
    };

    let (stop, stopped) = watch::channel(false);
    let until_stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let tasks = [
        tokio::spawn(async move {
            server
                .run(until_stopped(stopped.clone()))
                .await
                .map_err(DemoError::from)
        }),
        tokio::spawn({
            let rx = stop.subscribe();
            async move { orders.run(until_stopped(rx)).await.map_err(DemoError::from) }
        }),
        tokio::spawn({
            let rx = stop.subscribe();
            async move {
                payments
                    .run(until_stopped(rx))
                    .await
                    .map_err(DemoError::from)
            }
        }),
    ];

    let outcome = report::exercise(&sites, options.requests).await;
    if let Ok(traffic) = &outcome {
        report::print(&sites, traffic, dir, options.once);
    }
    if outcome.is_ok() && !options.once {
        interrupt.await;
        println!("\nstopping: draining the sidecars and the control plane");
    }
    let _ = stop.send(true);
    for task in tasks {
        if let Ok(Err(error)) = task.await {
            eprintln!("error: {error}");
        }
    }
    outcome.map(|_| ()).map_err(DemoError::Setup)
}

fn local(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .expect("a bound listener has an address")
}
