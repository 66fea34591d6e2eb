//! The usual stage of a resilience test: `n` instances of `payments.shop` (echo apps that
//! can be told to fail, each behind its own sidecar) with a TrafficPolicy, and an `orders`
//! sidecar to call them through.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::apps::EchoApp;
use crate::client::Reply;
use crate::load::{Call, send_many};
use crate::mesh::Mesh;
use crate::process::{free_port, loopback};
use crate::sidecar::Sidecar;

/// The authority the caller uses.
pub const PAYMENTS: &str = "payments.shop";

pub struct Cluster {
    pub mesh: Mesh,
    pub orders: Sidecar,
    pub apps: Vec<Arc<EchoApp>>,
    pub instances: Vec<Sidecar>,
    /// Each instance's address as the caller's sidecar knows it (`127.0.0.1:PORT`), in the
    /// order of `apps`.
    pub endpoints: Vec<String>,
}

impl Cluster {
    /// Starts `n` instances and the caller; `traffic_policy` is the payments TrafficPolicy
    /// spec (see [`Mesh::traffic_policy`]), if any. The instances' sidecars are named
    /// `payments-<i>`, apart from the MeshService, so they do not register themselves:
    /// the endpoints are exactly the static ones.
    pub async fn start(n: usize, traffic_policy: Option<&str>) -> Cluster {
        let mut apps = Vec::new();
        for i in 0..n {
            apps.push(EchoApp::start(&format!("payments-{i}")).await);
        }
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let addrs: Vec<SocketAddr> = ports.iter().map(|p| loopback(*p)).collect();
        let mut mesh = Mesh::new();
        mesh.add_service("shop", "payments", "shop/payments", &addrs);
        if let Some(spec) = traffic_policy {
            mesh.traffic_policy("shop", "payments", spec);
        }
        mesh.start_control_plane().await;
        let mut instances = Vec::new();
        for (i, (app, port)) in apps.iter().zip(&ports).enumerate() {
            let name = format!("payments-{i}");
            instances.push(
                mesh.sidecar(&name, "shop/payments", Some(app.addr), *port)
                    .await,
            );
        }
        let orders = mesh
            .sidecar("orders", "shop/orders", None, free_port())
            .await;
        Cluster {
            mesh,
            orders,
            apps,
            instances,
            endpoints: addrs.iter().map(ToString::to_string).collect(),
        }
    }

    /// One `GET path` to payments through the caller's sidecar.
    pub async fn get(&self, path: &str) -> Reply {
        Call::get(PAYMENTS, path)
            .send(self.orders.outbound)
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// `total` GETs of `path`, `concurrency` at a time.
    pub async fn get_many(
        &self,
        path: &str,
        total: usize,
        concurrency: usize,
    ) -> Vec<Result<Reply, String>> {
        send_many(
            self.orders.outbound,
            &Call::get(PAYMENTS, path),
            total,
            concurrency,
        )
        .await
    }

    /// Requests each app has received so far.
    pub fn received(&self) -> Vec<usize> {
        self.apps.iter().map(|a| a.requests()).collect()
    }

    /// The state (`closed`, `open`, `half-open`) the caller's `/circuits` shows for each
    /// instance, in order; `?` for an endpoint it does not list.
    pub async fn circuit_states(&self) -> Vec<String> {
        let circuits = self.orders.circuits().await;
        self.endpoints
            .iter()
            .map(|endpoint| {
                circuits["services"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|s| s["service"] == PAYMENTS)
                    .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
                    .find(|e| e["endpoint"] == endpoint.as_str())
                    .and_then(|e| e["state"].as_str().map(str::to_string))
                    .unwrap_or_else(|| "?".to_string())
            })
            .collect()
    }
}
