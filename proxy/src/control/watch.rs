//! Following the control plane's `GET /v1/watch` stream (docs/watch-protocol.md): one JSON
//! event per line, a full state first and then deltas, each applied to the mesh state.
//! A delta that does not follow the version held means something was missed: the proxy
//! reconnects, and a new stream starts with a full state. When the stream breaks
//! (control plane restarting or gone), the last config stays in force and the proxy
//! reconnects with backoff and jitter.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::Method;
use http_body_util::BodyExt;

use super::ControlPlaneClient;
use crate::backoff::Backoff;
use crate::identity::Identity;
use crate::mesh::MeshState;

/// A line longer than this is refused rather than buffered without end. A full state of
/// 10,000 services with policies is about 5 MiB.
const MAX_LINE: usize = 64 << 20;

/// Which proxy is watching: sent as query parameters so that the control plane knows which
/// ServerPolicy applies and can show the proxy in `outrigger status`.
pub(crate) struct Watcher {
    pub proxy_id: String,
    /// `name` or `namespace/name` of the MeshService this proxy serves, if configured.
    pub service: Option<String>,
}

pub(crate) async fn follow(
    cp: Arc<ControlPlaneClient>,
    identity: Arc<Identity>,
    mesh: Arc<MeshState>,
    watcher: Watcher,
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
        match watch_once(&cp, &path, &mesh, &mut backoff).await {
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
    mesh: &MeshState,
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
            let event = match crate::mesh::decode(&line) {
                Ok(event) => event,
                // Skipping it could leave a gap that the next delta's `base` reveals.
                Err(error) => return Err(format!("unreadable watch event: {error}")),
            };
            mesh.apply(&event)
                .map_err(|missed| format!("{missed}; asking for a full state"))?;
            backoff.reset();
        }
        // A full state's line is large; its buffer is not kept once the line is done.
        if buffer.is_empty() && buffer.capacity() > 64 * 1024 {
            buffer = BytesMut::new();
        }
        if buffer.len() > MAX_LINE {
            return Err(format!("watch event longer than {MAX_LINE} bytes"));
        }
    }
    Ok(())
}
