//! Reading the mesh's statistics as a test checks them: the control plane's
//! `/api/stats`, and a sidecar's own totals (admin `/stats`) with their HDR histograms
//! decoded, so that a test can compute what the merge of several sidecars must be.

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use outrigger_api::MeshStats;

use crate::client::get_h1;
use crate::mesh::Mesh;
use crate::sidecar::Sidecar;

/// One outbound service's totals in a sidecar's admin `/stats`.
pub struct SidecarTotals {
    pub requests: u64,
    pub successes: u64,
    /// Microseconds.
    pub latency: Histogram<u64>,
}

impl Mesh {
    /// The control plane's `/api/stats?window=...`.
    pub async fn stats(&self, window: &str) -> MeshStats {
        let reply = get_h1(
            self.cp_http,
            "localhost",
            &format!("/api/stats?window={window}"),
        )
        .await
        .expect("GET /api/stats");
        assert_eq!(reply.status, 200, "{}", reply.body);
        serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.body))
    }
}

impl Sidecar {
    /// What this sidecar has counted for calls to `service` (`name.namespace`).
    pub async fn totals(&self, service: &str) -> Option<SidecarTotals> {
        let json = get_h1(self.admin, "localhost", "/stats")
            .await
            .expect("GET admin /stats")
            .json();
        let found = json["services"]
            .as_array()?
            .iter()
            .find(|s| s["service"] == service)?
            .clone();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(found["latency"].as_str()?)
            .expect("base64 latency");
        let latency = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .expect("a V2 histogram");
        Some(SidecarTotals {
            requests: found["requests"].as_u64()?,
            successes: found["successes"].as_u64()?,
            latency,
        })
    }
}

/// A latency in the unit `/api/stats` uses (ms) from a histogram value (µs).
pub fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}
