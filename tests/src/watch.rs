//! An open `GET /v1/watch` stream read as a proxy reads it: line by line, each event
//! applied to the state held (docs/watch-protocol.md).

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use outrigger_api::{ServiceView, Snapshot, SnapshotDelta, WatchEvent};

use crate::control_plane::ControlPlane;
use crate::control_plane_client::{Workload, control_plane_tls, send_on_connection};

/// An open watch stream; dropping it closes the connection. It holds the state the lines
/// add up to, as a proxy does.
pub struct WatchStream {
    body: Incoming,
    buffered: Vec<u8>,
    connection: tokio::task::JoinHandle<()>,
    held: Option<Snapshot>,
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl WatchStream {
    /// Opens `path` (`/v1/watch?...`) as `workload`.
    pub async fn open(cp: &ControlPlane, anchor: &str, workload: &Workload, path: &str) -> Self {
        WatchStream::open_on(cp.api, anchor, workload, path).await
    }

    /// [`WatchStream::open`] on the API at `api` (from a task that holds no `ControlPlane`).
    pub async fn open_on(api: SocketAddr, anchor: &str, workload: &Workload, path: &str) -> Self {
        let (response, connection) = send_on_connection(
            api,
            control_plane_tls(anchor, Some(workload.certs.clone())),
            "GET",
            path,
            None,
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "application/x-ndjson");
        WatchStream {
            body: response.into_body(),
            buffered: Vec::new(),
            connection,
            held: None,
        }
    }

    /// The state after the next line, applied as a proxy applies it (a delta must start
    /// from the version held); panics if no line comes within 30s (only a broken build
    /// waits that long).
    pub async fn next(&mut self) -> Snapshot {
        self.next_event().await;
        self.held.clone().expect("a state")
    }

    /// The state the lines so far add up to.
    pub fn held(&self) -> &Snapshot {
        self.held.as_ref().expect("a first line was read")
    }

    /// The next line as sent, and its length in bytes; applied to the state held.
    pub async fn next_event(&mut self) -> (WatchEvent, usize) {
        let line = tokio::time::timeout(Duration::from_secs(30), self.next_line())
            .await
            .expect("a line within 30s");
        let event: WatchEvent = serde_json::from_slice(&line).unwrap_or_else(|e| {
            panic!("not a WatchEvent ({e}): {}", String::from_utf8_lossy(&line))
        });
        match (&event, &mut self.held) {
            (WatchEvent::Full(snapshot), held) => *held = Some(snapshot.clone()),
            (WatchEvent::Delta(_), None) => panic!("the first line must be full: {event:?}"),
            (WatchEvent::Delta(delta), Some(held)) => apply(held, delta),
        }
        (event, line.len())
    }

    /// Reads on until the control plane ends the stream or closes its connection;
    /// false if it is still open after `limit` (only a broken build waits that long).
    pub async fn ends_within(&mut self, limit: Duration) -> bool {
        tokio::time::timeout(limit, async {
            while let Some(Ok(_)) = self.body.frame().await {}
        })
        .await
        .is_ok()
    }

    /// A line's bytes without its newline.
    async fn next_line(&mut self) -> Vec<u8> {
        loop {
            if let Some(end) = self.buffered.iter().position(|b| *b == b'\n') {
                let mut line: Vec<u8> = self.buffered.drain(..=end).collect();
                line.pop();
                return line;
            }
            let frame = self
                .body
                .frame()
                .await
                .expect("the stream goes on")
                .expect("frame");
            if let Some(data) = frame.data_ref() {
                self.buffered.extend_from_slice(data);
            }
        }
    }
}

/// Applies a delta as docs/watch-protocol.md says a proxy does.
fn apply(held: &mut Snapshot, delta: &SnapshotDelta) {
    assert_eq!(held.version, delta.base, "a delta from the version held");
    held.version = delta.version;
    if let Some(bundle) = &delta.trust_bundle {
        held.trust_bundle = bundle.clone();
    }
    let key = |s: &ServiceView| (s.namespace.clone(), s.name.clone());
    for gone in &delta.removed {
        held.services
            .retain(|s| (&s.namespace, &s.name) != (&gone.namespace, &gone.name));
    }
    for service in &delta.upserted {
        match held.services.binary_search_by_key(&key(service), key) {
            Ok(i) => held.services[i] = service.clone(),
            Err(i) => held.services.insert(i, service.clone()),
        }
    }
    if let Some(update) = &delta.server_policy {
        held.server_policy = update.spec.clone();
    }
}
