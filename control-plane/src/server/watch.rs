//! `GET /v1/watch`: a long-lived stream of newline-delimited JSON [`WatchEvent`]s for an
//! authenticated proxy (docs/watch-protocol.md). The first line is the full state
//! (`full`); each later line is a `delta` from the version last sent to the latest one.
//! One line is in flight at a time: a slow reader gets one delta over the versions it
//! skipped, never a backlog, and a full state again if it fell further behind than the
//! changes kept ([`RecentChanges::KEEP`](crate::snapshot::RecentChanges::KEEP)).
//!
//! Each line is cut for this proxy from the global config when it is sent: the services
//! (all of them, or those that changed), and the ServerPolicy of the service the proxy
//! serves: the `service` parameter (`namespace/name`) if given, else the only
//! MeshService whose identity is the caller's. A change that touches nothing this proxy
//! holds (another service's ServerPolicy) sends it no line.
//!
//! The control plane cuts a stream (closes its connection) when the proxy stops reading
//! (`watch_send.rs`) and when the proxy's identity is revoked (`crate::revocation`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use outrigger_api::WatchEvent;
use outrigger_certs::SpiffeId;
use tokio::sync::{Notify, mpsc, watch};
use tracing::{info, warn};

use super::api_error::ApiFailure;
use super::body::{ChannelBody, RespBody};
use super::query::{WatchQuery, parse_watch};
use super::refusal::refused;
use super::watch_send::{Handed, hand_over};
use super::{ConnInfo, Shared, authn};
use crate::metrics::{Endpoint, Metrics, WatchCut};
use crate::policy::ServiceKey;
use crate::proxies::{ProxyWatchGuard, Seen};
use crate::revocation::Revocations;
use crate::snapshot::{Catchup, MeshConfig};
use crate::watchers::WatcherGuard;

pub(crate) fn handle(shared: &Shared, conn: &ConnInfo, query: Option<&str>) -> Response<RespBody> {
    match open(shared, conn, query) {
        Ok(response) => response,
        Err(failure) => {
            refused(shared, conn, Endpoint::Watch, &failure);
            failure.into_response()
        }
    }
}

fn open(
    shared: &Shared,
    conn: &ConnInfo,
    query: Option<&str>,
) -> Result<Response<RespBody>, ApiFailure> {
    let identity = authn::client(shared, conn, "GET /v1/watch")?.clone();
    let WatchQuery { service, proxy } =
        parse_watch(query).map_err(|e| ApiFailure::BadRequest(format!("GET /v1/watch: {e}")))?;
    if let Some(key) = &service {
        let current = shared.snapshots.current();
        match current.service(key) {
            Some(s) if s.identity != identity.as_str() => warn!(
                %identity,
                service = %key,
                "watcher asks for the ServerPolicy of a service whose identity is {}",
                s.identity
            ),
            _ => {}
        }
    }
    let proxy_guard = match proxy.as_deref() {
        Some(proxy_id) => {
            let served = shared
                .snapshots
                .current()
                .served_by(service.as_ref(), &identity);
            let seen = Seen {
                proxy_id,
                identity: &identity,
                peer: conn.peer,
            };
            let guard = shared
                .proxies
                .watch_opened(seen, served)
                .map_err(|e| ApiFailure::TooManyProxies(e.to_string()))?;
            Some(guard)
        }
        None => None,
    };
    let watcher = shared.watchers.register(identity.clone(), conn.peer);
    info!(
        %identity,
        peer = %conn.peer,
        proxy = proxy.as_deref().unwrap_or("-"),
        service = service.as_ref().map(ToString::to_string).as_deref().unwrap_or("-"),
        "watcher connected"
    );

    // One line in flight: the feeding task waits for the client, then sends the latest.
    let (tx, rx) = mpsc::channel(1);
    let feed = Feed {
        warm_until: shared.warm_until,
        configs: shared.snapshots.subscribe(),
        tx,
        stopping: shared.stopping.clone(),
        guards: (watcher, proxy_guard),
        identity,
        issued_at: conn.issued_at,
        requested: service,
        revocations: shared.revocations.subscribe(),
        stall: shared.limits.watch_stall_timeout,
        cut: conn.cut.clone(),
        metrics: shared.metrics.clone(),
    };
    tokio::spawn(feed.run());

    let mut response = Response::new(ChannelBody::boxed_from(rx));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// What one stream's feeding task holds.
struct Feed {
    warm_until: tokio::time::Instant,
    configs: watch::Receiver<Arc<MeshConfig>>,
    tx: mpsc::Sender<Bytes>,
    stopping: watch::Receiver<bool>,
    /// Dropped with the task: the watcher leaves the registry, its proxy is marked
    /// disconnected.
    guards: (WatcherGuard, Option<ProxyWatchGuard>),
    identity: SpiffeId,
    /// When the client certificate was issued (revocations compare it).
    issued_at: i64,
    requested: Option<ServiceKey>,
    revocations: watch::Receiver<Arc<Revocations>>,
    stall: Duration,
    /// Closes the stream's connection.
    cut: Arc<Notify>,
    metrics: Arc<Metrics>,
}

/// Why the feeding loop ended.
enum End {
    /// The client went away, or the server is stopping: the body just ends.
    Done,
    /// The control plane cuts the connection.
    Cut(WatchCut),
}

impl Feed {
    /// Sends lines until the client goes away, the server stops, or the stream is cut:
    /// the full state first, then a delta from the version last sent whenever something
    /// this proxy holds changes.
    async fn run(mut self) {
        let end = self.lines().await;
        let identity = &self.identity;
        match end {
            End::Done => info!(%identity, "watcher disconnected"),
            End::Cut(WatchCut::Stalled) => {
                self.metrics.watcher_cut(WatchCut::Stalled);
                warn!(
                    %identity,
                    stall_timeout = ?self.stall,
                    "watcher cut off: it stopped reading (its next line waited longer than --watch-stall-timeout)"
                );
            }
            End::Cut(WatchCut::Revoked) => {
                self.metrics.watcher_cut(WatchCut::Revoked);
                warn!(%identity, "watcher cut off: its identity was revoked");
            }
        }
        if matches!(end, End::Cut(_)) {
            // The body cannot end cleanly through full buffers: the connection closes.
            self.cut.notify_one();
        }
    }

    async fn lines(&mut self) -> End {
        // Right after a start, registered instances have not heartbeated back in yet.
        tokio::select! {
            () = tokio::time::sleep_until(self.warm_until) => {}
            () = self.tx.closed() => return End::Done,
            _ = self.stopping.wait_for(|stop| *stop) => return End::Done,
        }
        // The version last sent, and the service this proxy was served as then.
        let mut sent: Option<(u64, Option<ServiceKey>)> = None;
        loop {
            if self.revoked() {
                return End::Cut(WatchCut::Revoked);
            }
            let config = self.configs.borrow_and_update().clone();
            let served = config.served_by(self.requested.as_ref(), &self.identity);
            if let Some(event) = self.next_event(&config, sent.as_ref(), served.as_ref()) {
                let Some(line) = encode(&event) else {
                    return End::Done;
                };
                tokio::select! {
                    handed = hand_over(&self.tx, line, self.stall) => match handed {
                        Handed::Over => {}
                        Handed::Gone => return End::Done,
                        Handed::Stalled => return End::Cut(WatchCut::Stalled),
                    },
                    _ = self.stopping.wait_for(|stop| *stop) => return End::Done,
                }
                sent = Some((config.version, served));
            }
            tokio::select! {
                changed = self.configs.changed() => if changed.is_err() { return End::Done },
                changed = self.revocations.changed() => if changed.is_err() { return End::Done },
                () = self.tx.closed() => return End::Done,
                _ = self.stopping.wait_for(|stop| *stop) => return End::Done,
            }
        }
    }

    /// What to send for `config`, given what was sent: `None` when nothing this proxy
    /// holds changed.
    fn next_event(
        &self,
        config: &MeshConfig,
        sent: Option<&(u64, Option<ServiceKey>)>,
        served: Option<&ServiceKey>,
    ) -> Option<WatchEvent> {
        let Some((base, served_then)) = sent else {
            return Some(WatchEvent::Full(config.snapshot_for(served)));
        };
        match config.catch_up(*base, served_then.as_ref(), served) {
            Catchup::Delta(delta) => Some(WatchEvent::Delta(delta)),
            Catchup::UpToDate => {
                if let Some(proxy) = &self.guards.1 {
                    proxy.holds_current(*base, config.version);
                }
                None
            }
            Catchup::TooFarBehind => {
                info!(identity = %self.identity, base, "watcher too far behind for a delta: sending the full state");
                Some(WatchEvent::Full(config.snapshot_for(served)))
            }
        }
    }

    fn revoked(&mut self) -> bool {
        self.revocations
            .borrow_and_update()
            .check(&self.identity, self.issued_at, "certificate")
            .is_err()
    }
}

/// One line of the stream.
fn encode(event: &WatchEvent) -> Option<Bytes> {
    match serde_json::to_vec(event) {
        Ok(mut line) => {
            line.push(b'\n');
            Some(Bytes::from(line))
        }
        Err(e) => {
            warn!("cannot encode a watch line: {e}");
            None
        }
    }
}
