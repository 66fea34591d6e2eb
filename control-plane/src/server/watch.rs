//! `GET /v1/watch`: a long-lived stream of newline-delimited JSON snapshots for an
//! authenticated proxy. The first line is the current snapshot; each later line is the
//! latest one after a change (a slow reader skips versions, never gets a backlog).
//!
//! Each line is cut for this proxy from the global config when it is sent: every service,
//! and the ServerPolicy of the service the proxy serves: the `service` parameter
//! (`namespace/name`) if given, else the only MeshService whose identity is the caller's.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use outrigger_certs::SpiffeId;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::api_error::ApiFailure;
use super::body::{ChannelBody, RespBody};
use super::query::{WatchQuery, parse_watch};
use super::{ConnInfo, Shared};
use crate::policy::ServiceKey;
use crate::proxies::{ProxyWatchGuard, Seen};
use crate::snapshot::MeshConfig;
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

/// Sends snapshots until the client goes away or the server stops. Dropping `tx` ends
/// the body; dropping `_guards` takes the watcher off the registry and marks its proxy
/// disconnected.
async fn feed(
    warm_until: tokio::time::Instant,
    mut configs: watch::Receiver<Arc<MeshConfig>>,
    tx: mpsc::Sender<Bytes>,
    mut stopping: watch::Receiver<bool>,
    _guards: (WatcherGuard, Option<ProxyWatchGuard>),
    identity: SpiffeId,
    requested: Option<ServiceKey>,
) {
    // Right after a start, registered instances have not heartbeated back in yet.
    tokio::select! {
        () = tokio::time::sleep_until(warm_until) => {}
        () = tx.closed() => return,
        _ = stopping.wait_for(|stop| *stop) => return,
    }
    loop {
        let config = configs.borrow_and_update().clone();
        let Some(line) = encode(&config, requested.as_ref(), &identity) else {
            break;
        };
        tokio::select! {
            sent = tx.send(line) => if sent.is_err() { break },
            _ = stopping.wait_for(|stop| *stop) => break,
        }
        tokio::select! {
            changed = configs.changed() => if changed.is_err() { break },
            () = tx.closed() => break,
            _ = stopping.wait_for(|stop| *stop) => break,
        }
    }
    info!(%identity, "watcher disconnected");
}

/// This proxy's snapshot of `config`, as one line.
fn encode(
    config: &MeshConfig,
    requested: Option<&ServiceKey>,
    identity: &SpiffeId,
) -> Option<Bytes> {
    let served = config.served_by(requested, identity);
    let snapshot = outrigger_api::WatchEvent::Full(config.snapshot_for(served.as_ref()));
    match serde_json::to_vec(&snapshot) {
        Ok(mut line) => {
            line.push(b'\n');
            Some(Bytes::from(line))
        }
        Err(e) => {
            warn!("cannot encode snapshot {}: {e}", config.version);
            None
        }
    }
}
