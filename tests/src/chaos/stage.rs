//! The mesh a chaos phase runs on: the control plane, three instances of `payments.shop`
//! (each an `echo-app` process behind its own sidecar, the instances as static
//! endpoints), and the caller's sidecar, `orders`, that the load goes through. Every part
//! is a real process, so each can be killed, stopped and started again on its ports.

use std::path::Path;

use crate::app_process::AppProcess;
use crate::cluster::PAYMENTS;
use crate::mesh::Mesh;
use crate::open_loop::Target;
use crate::process::{free_port, loopback};
use crate::sidecar::Sidecar;

/// How many instances of the service.
pub const INSTANCES: usize = 3;
const IDENTITY: &str = "shop/payments";

pub struct Stage {
    pub mesh: Mesh,
    pub apps: Vec<AppProcess>,
    pub instances: Vec<Sidecar>,
    /// Each instance's inbound port (its endpoint in the MeshService).
    ports: Vec<u16>,
    pub orders: Sidecar,
}

impl Stage {
    /// Starts the whole stage with workload certificates of `cert_ttl` and, if given,
    /// this TrafficPolicy spec for payments (see [`Mesh::traffic_policy`]).
    pub async fn start(cert_ttl: &str, traffic_policy: Option<&str>) -> Stage {
        let ports: Vec<u16> = (0..INSTANCES).map(|_| free_port()).collect();
        let addrs: Vec<_> = ports.iter().map(|p| loopback(*p)).collect();
        let mut mesh = Mesh::new().cert_ttl(cert_ttl);
        mesh.add_service("shop", "payments", IDENTITY, &addrs);
        if let Some(spec) = traffic_policy {
            mesh.traffic_policy("shop", "payments", spec);
        }
        mesh.start_control_plane().await;
        let mut apps = Vec::new();
        for i in 0..INSTANCES {
            apps.push(AppProcess::start(&format!("payments-{i}"), mesh.root()).await);
        }
        let mut instances = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            instances.push(instance_sidecar(&mesh, i, &apps[i], *port).await);
        }
        let orders = mesh
            .sidecar("orders", "shop/orders", None, free_port())
            .await;
        Stage {
            mesh,
            apps,
            instances,
            ports,
            orders,
        }
    }

    /// Where the load goes: payments, through the caller's sidecar.
    pub fn target(&self) -> Target {
        Target {
            addr: self.orders.outbound,
            host: PAYMENTS.to_string(),
            path: "/".to_string(),
        }
    }

    /// Starts instance `i`'s sidecar again on its port (after a kill).
    pub async fn restart_sidecar(&mut self, i: usize) {
        self.instances[i].process.kill();
        self.instances[i] = instance_sidecar(&self.mesh, i, &self.apps[i], self.ports[i]).await;
    }

    /// The instance whose sidecar has served the most requests so far. A peak-EWMA
    /// balancer over three endpoints gives the costliest one nothing until its estimate
    /// decays (about 10 s after one slow answer, a cold first request say), so a fault
    /// meant to be met must go to an instance in rotation, not to a fixed one.
    pub async fn busiest_instance(&self) -> usize {
        let mut busiest = (0, -1.0);
        for (i, sidecar) in self.instances.iter().enumerate() {
            let served = sidecar
                .metric_sum("outrigger_requests_total", &[("direction", "inbound")])
                .await;
            if served > busiest.1 {
                busiest = (i, served);
            }
        }
        busiest.0
    }

    /// Whether the caller's breakers hold every instance as closed.
    pub async fn all_circuits_closed(&self) -> bool {
        let circuits = self.orders.circuits().await;
        let closed = circuits["services"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["service"] == PAYMENTS)
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["state"] == "closed")
            .count();
        closed == INSTANCES
    }

    /// A counter of the caller's sidecar for payments, summed over its other labels.
    pub async fn caller_counter(&self, name: &str) -> u64 {
        self.orders.metric_sum(name, &[("service", PAYMENTS)]).await as u64
    }

    /// Ejections the caller's breakers enforced (trips refused by maxEjectedPercent are
    /// not counted).
    pub async fn enforced_ejections(&self) -> u64 {
        self.orders
            .metric_sum(
                "outrigger_circuit_ejections_total",
                &[("service", PAYMENTS), ("kind", "enforced")],
            )
            .await as u64
    }

    /// Copies every process's log into `dir` (for a look after the run).
    pub fn keep_logs(&self, dir: &Path) {
        let _ = std::fs::create_dir_all(dir);
        let Ok(entries) = std::fs::read_dir(self.mesh.root()) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                let _ = std::fs::copy(&path, dir.join(entry.file_name()));
            }
        }
    }
}

/// Instance `i`'s sidecar, named apart from the MeshService so that it does not register
/// itself: the service's endpoints are exactly the static ones, and stay listed while
/// an instance is down, as a crashed pod's address does until something notices.
async fn instance_sidecar(mesh: &Mesh, i: usize, app: &AppProcess, port: u16) -> Sidecar {
    mesh.sidecar(&format!("payments-{i}"), IDENTITY, Some(app.addr), port)
        .await
}
