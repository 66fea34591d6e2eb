//! Following the control plane's `GET /v1/watch` stream: one JSON snapshot per line,
//! each applied whole. When the stream breaks (control plane restarting or gone), the
//! last snapshot stays in force and the proxy reconnects with backoff and jitter.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::Method;
use http_body_util::BodyExt;
use outrigger_api::Snapshot;
use tokio::sync::watch;

use super::ControlPlaneClient;
use crate::backoff::Backoff;
use crate::discovery::Discovery;
use crate::identity::Identity;

/// A snapshot line longer than this is refused rather than buffered without end.
const MAX_LINE: usize = 16 << 20;

/// Which proxy is watching: sent as query parameters so that the control plane knows which
/// ServerPolicy applies and can show the proxy in `outrigger status`.
pub struct Watcher {
    pub proxy_id: String,
    /// `name` or `namespace/name` of the MeshService this proxy serves, if configured.
    pub service: Option<String>,
}

pub async fn follow(
    cp: Arc<ControlPlaneClient>,
    identity: Arc<Identity>,
    discovery: Arc<Discovery>,
    watcher: Watcher,
    applied: watch::Sender<u64>,
) {
    // The watch is authenticated by our certificate.
    identity.wait_certified().await;
    let mut path = format!("/v1/watch?proxy={}", watcher.proxy_id);
    if let Some(service) = &watcher.service {
        // A bare service name is in the namespace of the identity we were issued.
        let namespace = identity.id().map(|id| id.namespace()).unwrap_or("default");
        let (namespace, name) = crate::config::qualify_service(service, namespace);
        path.push_str(&format!("&service={namespace}/{name}"));
    }
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        match watch_once(&cp, &path, &discovery, &applied, &mut backoff).await {
            Ok(()) => tracing::info!(
                control_plane = cp.authority(),
                "watch stream ended; reconnecting"
            ),
            Err(error) => {
                tracing::warn!(control_plane = cp.authority(), %error, "watch failed; keeping the last config")
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

async fn watch_once(
    cp: &ControlPlaneClient,
    path: &str,
    discovery: &Discovery,
    applied: &watch::Sender<u64>,
    backoff: &mut Backoff,
) -> Result<(), String> {
    let response = cp
        .send(Method::GET, path, None, true)
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        return Err(format!("control plane answered {status}: {body}"));
    }
    let mut body = response.into_body();
    let mut buffer = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buffer.extend_from_slice(&data);
        while let Some(newline) = buffer.iter().position(|b| *b == b'\n') {
            let line = buffer.split_to(newline);
            buffer.advance(1);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue; // keep-alive
            }
            match serde_json::from_slice::<Snapshot>(&line) {
                Ok(snapshot) => {
                    discovery.apply(&snapshot);
                    applied.send_replace(snapshot.version);
                    backoff.reset();
                }
                Err(error) => tracing::warn!(%error, "ignoring an unreadable snapshot"),
            }
        }
        if buffer.len() > MAX_LINE {
            return Err(format!("snapshot longer than {MAX_LINE} bytes"));
        }
    }
    Ok(())
}
