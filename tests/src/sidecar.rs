//! A running sidecar as a test sees it: its ports, and what its admin endpoints say
//! (readiness, the config it enforces, circuits, metrics).

use std::net::SocketAddr;

use crate::client::get_h1;
use crate::process::{Process, START_LIMIT, eventually};

pub struct Sidecar {
    pub process: Process,
    pub inbound: SocketAddr,
    pub outbound: SocketAddr,
    pub admin: SocketAddr,
}

impl Sidecar {
    pub async fn wait_ready(&self) {
        let admin = self.admin;
        eventually("sidecar ready", START_LIMIT, || async move {
            matches!(get_h1(admin, "localhost", "/ready").await, Ok(r) if r.status == 200)
        })
        .await;
    }

    /// The admin `/config` (what the sidecar enforces now), as JSON.
    pub async fn config(&self) -> serde_json::Value {
        get_h1(self.admin, "localhost", "/config")
            .await
            .expect("GET /config")
            .json()
    }

    /// The endpoints this sidecar currently has for `service` (its name).
    pub async fn endpoints_of(&self, service: &str) -> Vec<String> {
        let config = self.config().await;
        config["services"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["name"] == service)
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .filter_map(|e| e.as_str().map(str::to_string))
            .collect()
    }

    /// The admin `/metrics` text.
    pub async fn metrics(&self) -> String {
        get_h1(self.admin, "localhost", "/metrics")
            .await
            .expect("scrape metrics")
            .body
    }

    /// The admin `/circuits` (every endpoint's breaker), as JSON.
    pub async fn circuits(&self) -> serde_json::Value {
        get_h1(self.admin, "localhost", "/circuits")
            .await
            .expect("GET /circuits")
            .json()
    }

    /// What `/circuits` says about one endpoint of `service` ("name.namespace").
    pub async fn circuit(&self, service: &str, endpoint: &str) -> Option<serde_json::Value> {
        let circuits = self.circuits().await;
        circuits["services"]
            .as_array()?
            .iter()
            .filter(|s| s["service"] == service)
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .find(|e| e["endpoint"] == endpoint)
    }

    /// The sum of the samples of metric `name` whose labels include all of `labels`
    /// (0 when there is none): e.g. `("outrigger_requests_total", &[("error", "timeout")])`.
    pub async fn metric_sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        sum_samples(&self.metrics().await, name, labels)
    }

    /// One sample's value from `/metrics`, by its full series text.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        self.metrics()
            .await
            .lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
    }
}

/// The sum of the samples of `name` in Prometheus text whose labels include all of
/// `labels`.
pub fn sum_samples(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (series, value) = rest.rsplit_once(' ')?;
            let inner = match series {
                "" => "",
                s => s.strip_prefix('{')?.strip_suffix('}')?,
            };
            let found: Vec<&str> = split_labels(inner);
            labels
                .iter()
                .all(|(k, v)| found.contains(&format!("{k}=\"{v}\"").as_str()))
                .then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}

/// `a="x",b="y,z"` → `["a=\"x\"", "b=\"y,z\""]` (commas inside quotes kept).
fn split_labels(inner: &str) -> Vec<&str> {
    let (mut parts, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in inner.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < inner.len() {
        parts.push(&inner[start..]);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::sum_samples;

    #[test]
    fn sums_samples_by_label_subset() {
        let text = "# HELP x y\n\
            outrigger_retries_total{service=\"a.shop\"} 3\n\
            outrigger_retries_total{service=\"b.shop\"} 4\n\
            outrigger_retries_total_x{service=\"a.shop\"} 100\n\
            outrigger_requests_total{direction=\"outbound\",service=\"a.shop\",status_code=\"504\",error=\"timeout\"} 2\n\
            outrigger_requests_total{direction=\"inbound\",service=\"a,shop\",status_code=\"504\",error=\"timeout\"} 5\n\
            outrigger_config_version 7\n";
        assert_eq!(sum_samples(text, "outrigger_retries_total", &[]), 7.0);
        assert_eq!(
            sum_samples(text, "outrigger_retries_total", &[("service", "a.shop")]),
            3.0
        );
        assert_eq!(
            sum_samples(text, "outrigger_requests_total", &[("error", "timeout")]),
            7.0
        );
        assert_eq!(
            sum_samples(
                text,
                "outrigger_requests_total",
                &[("direction", "outbound"), ("error", "timeout")]
            ),
            2.0
        );
        assert_eq!(sum_samples(text, "outrigger_config_version", &[]), 7.0);
        assert_eq!(sum_samples(text, "outrigger_missing", &[]), 0.0);
    }
}
