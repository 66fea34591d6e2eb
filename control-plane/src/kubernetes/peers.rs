//! The other replicas' convergence counts: the control plane's Service's EndpointSlices
//! list every replica (pod name and IP, and the `http` port), and each serves its counts
//! at `GET /api/convergence` on that port. Chosen over having each replica write its
//! counts into the API server: no object to create, no more RBAC than the EndpointSlice
//! list cluster mode already has, and no write per replica per round.
//!
//! A replica that does not answer (starting, being replaced, or a NetworkPolicy
//! between them) is left out of that round with a warning: its proxies are then not
//! counted, so `proxies` can dip while replicas come and go.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use kube::{Api, Client};
use tracing::warn;

use super::convergence::ReplicaConvergence;

/// A peer that does not answer within this long is left out of the round.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Far above any real report (a few hundred bytes per resource).
const MAX_REPORT: usize = 16 << 20;
/// The Service port the replicas' HTTP listener is published as.
const HTTP_PORT_NAME: &str = "http";

/// One other replica, as its Service's EndpointSlices list it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The pod's name (`targetRef`), or its address if the endpoint names no pod.
    pub name: String,
    /// `ip:port` of its HTTP listener.
    pub http: String,
}

/// Finds and asks the other replicas.
pub struct Peers {
    slices: Api<EndpointSlice>,
    service: String,
    me: String,
    http: HttpClient<HttpConnector, Empty<Bytes>>,
}

impl Peers {
    /// The replicas behind `namespace/service`, except the one named `me`.
    pub fn new(client: Client, namespace: &str, service: &str, me: &str) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(TIMEOUT));
        Peers {
            slices: Api::namespaced(client, namespace),
            service: service.to_string(),
            me: me.to_string(),
            http: HttpClient::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// The other replicas now.
    pub async fn list(&self) -> Result<Vec<Peer>, kube::Error> {
        let selector = format!("kubernetes.io/service-name={}", self.service);
        let slices = self
            .slices
            .list(&ListParams::default().labels(&selector))
            .await?;
        let mut peers = Vec::new();
        for slice in slices {
            let port = slice
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(HTTP_PORT_NAME))
                .and_then(|p| p.port);
            let Some(port) = port else { continue };
            for endpoint in slice.endpoints.into_iter().flatten() {
                // A terminating replica may still answer, but its proxies are leaving it.
                let conditions = endpoint.conditions.unwrap_or_default();
                if conditions.serving == Some(false) {
                    continue;
                }
                let Some(address) = endpoint.addresses.into_iter().next() else {
                    continue;
                };
                let name = endpoint
                    .target_ref
                    .and_then(|r| r.name)
                    .unwrap_or_else(|| address.clone());
                if name == self.me {
                    continue;
                }
                let http = if address.contains(':') {
                    format!("[{address}]:{port}")
                } else {
                    format!("{address}:{port}")
                };
                peers.push(Peer { name, http });
            }
        }
        peers.sort_by(|a, b| a.name.cmp(&b.name));
        peers.dedup();
        Ok(peers)
    }

    /// Every other replica's counts; those that do not answer are left out (logged).
    pub async fn reports(&self) -> Vec<ReplicaConvergence> {
        let peers = match self.list().await {
            Ok(peers) => peers,
            Err(e) => {
                warn!(
                    "listing the other control-plane replicas (EndpointSlices of {}): {e}",
                    self.service
                );
                return Vec::new();
            }
        };
        let asked = peers.iter().map(|peer| async move {
            match tokio::time::timeout(TIMEOUT, self.ask(peer)).await {
                Ok(Ok(report)) => Some(report),
                Ok(Err(e)) => {
                    warn!(
                        "replica {} ({}): {e}; its proxies are not counted",
                        peer.name, peer.http
                    );
                    None
                }
                Err(_) => {
                    warn!(
                        "replica {} ({}) did not answer within {TIMEOUT:?}; its proxies are not counted",
                        peer.name, peer.http
                    );
                    None
                }
            }
        });
        futures::future::join_all(asked)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    async fn ask(&self, peer: &Peer) -> Result<ReplicaConvergence, String> {
        let uri: http::Uri = format!("http://{}/api/convergence", peer.http)
            .parse()
            .map_err(|e| format!("bad address: {e}"))?;
        let response = self
            .http
            .get(uri)
            .await
            .map_err(|e| format!("asking /api/convergence: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("/api/convergence answered {}", response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_REPORT)
            .collect()
            .await
            .map_err(|e| format!("reading /api/convergence: {e}"))?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| format!("reading /api/convergence: {e}"))
    }
}
