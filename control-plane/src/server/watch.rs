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

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use outrigger_api::WatchEvent;
use outrigger_certs::SpiffeId;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::api_error::ApiFailure;
use super::body::{ChannelBody, RespBody};
use super::query::{WatchQuery, parse_watch};
use super::{ConnInfo, Shared};
use crate::policy::ServiceKey;
use crate::proxies::{ProxyWatchGuard, Seen};
use crate::snapshot::{Catchup, MeshConfig};
use crate::watchers::WatcherGuard;

pub(crate) fn handle(shared: &Shared, conn: &ConnInfo, query: Option<&str>) -> Response<RespBody> {
    let Some(identity) = conn.identity.clone() else {
        warn!(peer = %conn.peer, "refused watch: no client certificate");
        return ApiFailure::Unauthenticated(
            "GET /v1/watch requires a client certificate (mTLS): get one from POST /v1/certificates first".into(),
        )
        .into_response();
    };
    let WatchQuery { service, proxy } = match parse_watch(query) {
        Ok(query) => query,
        Err(e) => {
            warn!(%identity, peer = %conn.peer, "refused watch: {e}");
            return ApiFailure::BadRequest(format!("GET /v1/watch: {e}")).into_response();
        }
    };
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
    let watcher = shared.watchers.register(identity.clone(), conn.peer);
    let proxy_guard = proxy.as_deref().map(|proxy_id| {
        let served = shared
            .snapshots
            .current()
            .served_by(service.as_ref(), &identity);
        let seen = Seen {
            proxy_id,
            identity: &identity,
            peer: conn.peer,
        };
        shared.proxies.watch_opened(seen, served)
    });
    info!(
        %identity,
        peer = %conn.peer,
        proxy = proxy.as_deref().unwrap_or("-"),
        service = service.as_ref().map(ToString::to_string).as_deref().unwrap_or("-"),
        "watcher connected"
    );

    // One line in flight: the feeding task waits for the client, then sends the latest.
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(feed(
        shared.warm_until,
        shared.snapshots.subscribe(),
        tx,
        shared.stopping.clone(),
        (watcher, proxy_guard),
        identity,
        service,
    ));

    let mut response = Response::new(ChannelBody::boxed_from(rx));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Sends lines until the client goes away or the server stops: the full state first,
/// then a delta from the version last sent whenever something this proxy holds changes.
/// Dropping `tx` ends the body; dropping the guards takes the watcher off the registry
/// and marks its proxy disconnected.
async fn feed(
    warm_until: tokio::time::Instant,
    mut configs: watch::Receiver<Arc<MeshConfig>>,
    tx: mpsc::Sender<Bytes>,
    mut stopping: watch::Receiver<bool>,
    (_watcher, proxy): (WatcherGuard, Option<ProxyWatchGuard>),
    identity: SpiffeId,
    requested: Option<ServiceKey>,
) {
    // Right after a start, registered instances have not heartbeated back in yet.
    tokio::select! {
        () = tokio::time::sleep_until(warm_until) => {}
        () = tx.closed() => return,
        _ = stopping.wait_for(|stop| *stop) => return,
    }
    // The version last sent, and the service this proxy was served as then.
    let mut sent: Option<(u64, Option<ServiceKey>)> = None;
    loop {
        let config = configs.borrow_and_update().clone();
        let served = config.served_by(requested.as_ref(), &identity);
        let event = match &sent {
            None => Some(WatchEvent::Full(config.snapshot_for(served.as_ref()))),
            Some((base, served_then)) => {
                match config.catch_up(*base, served_then.as_ref(), served.as_ref()) {
                    Catchup::Delta(delta) => Some(WatchEvent::Delta(delta)),
                    Catchup::UpToDate => {
                        if let Some(proxy) = &proxy {
                            proxy.holds_current(*base, config.version);
                        }
                        None
                    }
                    Catchup::TooFarBehind => {
                        info!(%identity, base, "watcher too far behind for a delta: sending the full state");
                        Some(WatchEvent::Full(config.snapshot_for(served.as_ref())))
                    }
                }
            }
        };
        if let Some(event) = event {
            let Some(line) = encode(&event) else {
                break;
            };
            tokio::select! {
                sent = tx.send(line) => if sent.is_err() { break },
                _ = stopping.wait_for(|stop| *stop) => break,
            }
            sent = Some((config.version, served));
        }
        tokio::select! {
            changed = configs.changed() => if changed.is_err() { break },
            () = tx.closed() => break,
            _ = stopping.wait_for(|stop| *stop) => break,
        }
    }
    info!(%identity, "watcher disconnected");
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
