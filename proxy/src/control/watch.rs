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
    let mut lines = WatchLines::default();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        lines.push(&data, mesh, backoff)?;
    }
    Ok(())
}

/// The stream's bytes, cut into lines and applied one event at a time. Frames split
/// lines anywhere, so the bytes after the last newline wait for the next frame.
#[derive(Default)]
pub(crate) struct WatchLines {
    buffer: BytesMut,
    /// How much of `buffer` is known to hold no newline: a long line arriving in many
    /// frames is then searched once, not once per frame.
    searched: usize,
}

impl WatchLines {
    /// Takes one frame of the body and applies every line it completes.
    pub(crate) fn push(
        &mut self,
        data: &[u8],
        mesh: &MeshState,
        backoff: &mut Backoff,
    ) -> Result<(), String> {
        self.buffer.extend_from_slice(data);
        while let Some(found) = self.buffer[self.searched..]
            .iter()
            .position(|b| *b == b'\n')
        {
            let line = self.buffer.split_to(self.searched + found);
            self.buffer.advance(1);
            self.searched = 0;
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
        self.searched = self.buffer.len();
        // A full state's line is large; its buffer is not kept once the line is done.
        if self.buffer.is_empty() && self.buffer.capacity() > 64 * 1024 {
            self.buffer = BytesMut::new();
        }
        if self.buffer.len() > MAX_LINE {
            return Err(format!("watch event longer than {MAX_LINE} bytes"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use outrigger_api::{EndpointView, Protocol, ServiceView, Snapshot, SnapshotDelta, WatchEvent};
    use outrigger_certs::{CaPaths, TrustBundle, init_ca};

    use super::*;
    use crate::metrics::ProxyMetrics;

    fn mesh() -> (Arc<MeshState>, String, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        init_ca(dir.path(), "cluster.local").expect("CA");
        let pem = std::fs::read_to_string(CaPaths::new(dir.path()).trust_anchor()).expect("PEM");
        let bundle = TrustBundle::from_pem(&pem).expect("bundle");
        let metrics = ProxyMetrics::new();
        let identity = Identity::new(bundle, "cluster.local", metrics.clone());
        (MeshState::new(identity, metrics), pem, dir)
    }

    fn stream(pem: &str) -> Vec<u8> {
        let service = ServiceView {
            addresses: vec![],
            name: "payments".into(),
            namespace: "shop".into(),
            identity: "spiffe://cluster.local/ns/shop/sa/payments".into(),
            protocol: Protocol::Http,
            endpoints: vec![EndpointView {
                address: "127.0.0.1:4143".into(),
            }],
            traffic_policy: None,
        };
        let full = WatchEvent::Full(Snapshot {
            version: 1,
            trust_bundle: pem.into(),
            services: vec![service.clone()],
            server_policy: None,
        });
        let delta = WatchEvent::Delta(SnapshotDelta {
            version: 2,
            base: 1,
            upserted: vec![ServiceView {
                name: "orders".into(),
                ..service
            }],
            ..SnapshotDelta::default()
        });
        let mut bytes = serde_json::to_vec(&full).expect("encodes");
        bytes.extend_from_slice(b"\n\n");
        bytes.extend_from_slice(&serde_json::to_vec(&delta).expect("encodes"));
        bytes.push(b'\n');
        bytes
    }

    #[test]
    fn lines_split_anywhere_across_frames_apply_as_one() {
        let (_, pem, _dir) = mesh();
        let bytes = stream(&pem);
        // Every cut, and a stream of one-byte frames: frames never decide what a line is.
        for cut in (1..bytes.len()).step_by(97).chain([bytes.len() - 1]) {
            let (mesh, _, _dir) = mesh();
            let mut lines = WatchLines::default();
            let mut backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(2));
            lines.push(&bytes[..cut], &mesh, &mut backoff).unwrap();
            lines.push(&bytes[cut..], &mesh, &mut backoff).unwrap();
            assert_eq!(mesh.version(), 2, "cut at {cut}");
        }
        let (mesh, _, _dir) = mesh();
        let mut lines = WatchLines::default();
        let mut backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(2));
        for byte in bytes.chunks(1) {
            lines.push(byte, &mesh, &mut backoff).unwrap();
        }
        assert_eq!(mesh.version(), 2);
        assert_eq!(mesh.table().len(), 2);
    }

    #[test]
    fn an_unreadable_line_is_an_error() {
        let (mesh, _, _dir) = mesh();
        let mut lines = WatchLines::default();
        let mut backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(2));
        let err = lines
            .push(b"{\"full\":\n", &mesh, &mut backoff)
            .unwrap_err();
        assert!(err.contains("unreadable watch event"), "{err}");
    }
}
