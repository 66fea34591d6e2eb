//! Putting the proxy together: read the start-up files, bind the three listeners (so that
//! a port in use fails at once, by name), then run the certificate, the watch of the
//! mesh, the heartbeats and the servers until shutdown, and drain.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use outrigger_certs::TrustBundle;
use tokio::net::TcpListener;

use crate::Error;
use crate::admin::Admin;
use crate::config::Config;
use crate::control::stats::{Shipper, StatsSources};
use crate::control::{ControlPlaneClient, certify, register, stats, watch};
use crate::health::{self, HealthCheck};
use crate::identity::Identity;
use crate::inbound::{AppPorts, Inbound, InboundLimits, InboundMetrics};
use crate::mesh::MeshState;
use crate::metrics::{Direction, ProxyMetrics};
use crate::outbound::{Interception, Outbound, TargetContext, Targets};
use crate::serve::{bind, drain};
use crate::trace::Tracing;
use crate::transport::{mesh_client_config, mesh_tcp_client_config};

/// A proxy whose listeners are bound, ready to run.
pub struct Proxy {
    config: Config,
    token: String,
    bundle: Arc<TrustBundle>,
    inbound: TcpListener,
    outbound: TcpListener,
    admin: TcpListener,
}

impl Proxy {
    /// Reads the trust anchors and the token, and binds the listeners.
    pub async fn bind(config: Config) -> Result<Self, Error> {
        let anchors = read(
            &config.trust_anchors,
            "trust anchors (OUTRIGGER_TRUST_ANCHORS)",
        )?;
        let bundle = TrustBundle::from_pem(&anchors).map_err(|e| Error::File {
            what: "trust anchors (OUTRIGGER_TRUST_ANCHORS)",
            path: config.trust_anchors.clone(),
            reason: e.to_string(),
        })?;
        let token = read(&config.token_file, "bootstrap token (OUTRIGGER_TOKEN_FILE)")?
            .trim()
            .to_string();
        if token.is_empty() {
            return Err(Error::File {
                what: "bootstrap token (OUTRIGGER_TOKEN_FILE)",
                path: config.token_file.clone(),
                reason: "file is empty".into(),
            });
        }
        let admin = bind(config.admin_addr, "admin (OUTRIGGER_ADMIN_ADDR)").await?;
        let outbound = bind(config.outbound_addr, "outbound (OUTRIGGER_OUTBOUND_ADDR)").await?;
        let inbound = bind(config.inbound_addr, "inbound (OUTRIGGER_INBOUND_ADDR)").await?;
        Ok(Proxy {
            config,
            token,
            bundle,
            inbound,
            outbound,
            admin,
        })
    }

    pub fn inbound_addr(&self) -> SocketAddr {
        local(&self.inbound)
    }
    pub fn outbound_addr(&self) -> SocketAddr {
        local(&self.outbound)
    }
    pub fn admin_addr(&self) -> SocketAddr {
        local(&self.admin)
    }

    /// Runs until `shutdown` resolves, then stops accepting and lets in-flight requests
    /// finish (up to the grace period).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let config = self.config;
        let metrics = ProxyMetrics::new();
        let identity = Identity::new(self.bundle, &config.trust_domain, metrics.clone());
        let cp = Arc::new(ControlPlaneClient::new(
            config.control_plane_authority(),
            &config.trust_domain,
            identity.bundle.clone(),
            identity.certs.clone(),
        )?);
        let mesh = MeshState::new(identity.clone(), metrics.clone());
        let targets = Targets::new(
            TargetContext {
                tls: mesh_client_config(&identity)?,
                metrics: metrics.clone(),
                connect_timeout: config.connect_timeout,
            },
            mesh.clone(),
            config.target_idle_timeout,
        );
        let service_label = config.service.clone().unwrap_or_else(|| "app".to_string());
        let traces = Tracing::start(
            &config.trace,
            &identity,
            config.service.as_deref().unwrap_or("outrigger-proxy"),
        );
        let apps = AppPorts::new(
            config.app_addr,
            config.app_protocol,
            config.connect_timeout,
            metrics.clone(),
        )
        .with_own_port(local(&self.inbound).port());
        let inbound_metrics = metrics.service(Direction::Inbound, &service_label);
        let inbound = Inbound::new(
            &identity,
            mesh.inbound_policy(),
            apps,
            InboundMetrics {
                service: inbound_metrics.clone(),
                registry: metrics.clone(),
            },
            InboundLimits {
                detect_timeout: config.detect_timeout,
                http: &config.limits,
            },
            traces.inbound(&service_label),
        )?;
        let interception = Interception {
            opaque_ports: config.opaque_ports.clone().into_boxed_slice(),
            detect_timeout: config.detect_timeout,
            tcp_tls: mesh_tcp_client_config(&identity)?,
            connect_timeout: config.connect_timeout,
        };
        let outbound = Outbound::new(
            mesh.clone(),
            targets.clone(),
            &metrics,
            interception,
            traces.outbound(),
            &config.limits,
        );
        let admin = Arc::new(Admin {
            identity: identity.clone(),
            mesh: mesh.clone(),
            targets: targets.clone(),
            metrics: metrics.clone(),
            trace_counters: traces.counters.clone(),
        });

        tracing::info!(
            inbound = %local(&self.inbound),
            outbound = %local(&self.outbound),
            admin = %local(&self.admin),
            control_plane = cp.authority(),
            "outrigger-proxy listening"
        );
        let (signal, drain) = drain();
        let proxy_id = register::proxy_id();
        let applied = mesh.subscribe();
        // Without a health check, the app counts as healthy while the proxy runs.
        let (healthy_tx, healthy_rx) = tokio::sync::watch::channel(config.app_health.is_none());
        let mut background = vec![
            tokio::spawn(certify(cp.clone(), identity.clone(), self.token)),
            tokio::spawn(watch::follow(
                cp.clone(),
                identity.clone(),
                mesh,
                watch::Watcher {
                    proxy_id: proxy_id.clone(),
                    service: config.service.clone(),
                },
            )),
            tokio::spawn(targets.clone().evict_idle_forever()),
        ];
        if let (Some(path), Some(app)) = (&config.app_health, config.app_addr) {
            background.push(tokio::spawn(health::check_app(
                HealthCheck {
                    app,
                    path: path.clone(),
                    interval: config.app_health_interval,
                    timeout: config.app_health_timeout,
                    failures: config.app_health_failures,
                    successes: config.app_health_successes,
                },
                healthy_tx,
            )));
        }
        let instance = match (&config.service, config.app_addr) {
            (Some(service), Some(_)) => Some((
                service.clone(),
                config.advertised_inbound(local(&self.inbound)),
            )),
            _ => None,
        };
        // Not aborted at shutdown either: it ships the last interval's numbers.
        let shipping = tokio::spawn(stats::ship(
            cp.clone(),
            identity.clone(),
            Shipper::new(
                StatsSources {
                    metrics: metrics.clone(),
                    inbound: inbound_metrics,
                    targets: targets.clone(),
                },
                proxy_id.clone(),
            ),
            config.service.clone(),
            config.stats_interval,
            drain.clone(),
        ));
        // Not aborted at shutdown: it sends the last, unhealthy heartbeat itself.
        let heartbeats = tokio::spawn(register::heartbeat(
            cp,
            identity.clone(),
            register::Registration {
                proxy_id,
                instance,
                interval: config.heartbeat_interval,
            },
            healthy_rx,
            applied,
            drain.clone(),
        ));
        let grace = config.shutdown_grace;
        let servers = [
            tokio::spawn(inbound.serve(self.inbound, drain.clone(), grace)),
            tokio::spawn(outbound.serve(self.outbound, drain.clone(), grace)),
            tokio::spawn(admin.serve(self.admin, drain)),
        ];
        shutdown.await;
        tracing::info!("shutting down: no new connections; finishing in-flight requests");
        signal.start();
        for server in servers {
            let _ = server.await;
        }
        let _ = heartbeats.await;
        let _ = shipping.await;
        // Every request has ended: what they left in the log and span queues goes out.
        traces.finish().await;
        for task in background {
            task.abort();
        }
        tracing::info!("drained; exiting");
        Ok(())
    }
}

fn local(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .expect("a bound listener has a local address")
}

fn read(path: &std::path::Path, what: &'static str) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| Error::File {
        what,
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}
