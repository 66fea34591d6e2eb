//! Rotating a test mesh's trust anchor in the steps of docs/ca-rotation.md, and waiting
//! for the sidecars to follow: the new bundle applied everywhere, certificates renewed.

use crate::cli::stderr;
use crate::mesh::Mesh;
use crate::process::{START_LIMIT, eventually, run};
use crate::sidecar::Sidecar;

const EXPIRY: &str = "outrigger_certificate_expiry_timestamp_seconds";

impl Mesh {
    /// Runs `outrigger ca rotate <step>` (`&["start"]`, `&["finish", "--force"]`)
    /// against the mesh's data dir; the step must succeed.
    pub fn rotate_anchor(&self, step: &[&str]) {
        let data = self.data_dir();
        let mut args = vec!["ca", "rotate"];
        args.extend_from_slice(step);
        args.extend_from_slice(&["--data-dir", data.to_str().expect("utf-8 path")]);
        let out = run("outrigger", &args);
        assert!(out.status.success(), "ca rotate {step:?}: {}", stderr(&out));
    }

    /// The config version the control plane serves now.
    pub async fn config_version(&self) -> u64 {
        self.status().await["version"]
            .as_u64()
            .expect("a version in /api/status")
    }

    /// Waits until every connected sidecar has applied a version newer than `after`;
    /// returns the version served then.
    pub async fn converged_past(&self, after: u64) -> u64 {
        eventually(
            "the sidecars apply the new version",
            START_LIMIT,
            || async move {
                let status = self.status().await;
                status["version"].as_u64().expect("a version") > after
                    && status["converged"] == true
            },
        )
        .await;
        self.config_version().await
    }
}

impl Sidecar {
    /// When its current certificate expires (Unix seconds; 0 before the first).
    pub async fn certificate_expiry(&self) -> i64 {
        self.metric(EXPIRY).await.unwrap_or(0.0) as i64
    }

    /// Waits until it holds a certificate that expires at `expiry` or later.
    pub async fn wait_certificate_until(&self, expiry: i64) {
        eventually("a renewed certificate", START_LIMIT, || async move {
            self.certificate_expiry().await >= expiry
        })
        .await;
    }
}
