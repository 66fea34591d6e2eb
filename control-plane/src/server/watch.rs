//! `GET /v1/watch`: a long-lived stream of newline-delimited JSON snapshots for an
//! authenticated proxy. The first line is the current snapshot; each later line is the
//! latest one after a change (a slow reader skips versions, never gets a backlog).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use outrigger_api::Snapshot;
use outrigger_certs::SpiffeId;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::api_error::ApiFailure;
use super::body::{ChannelBody, RespBody};
use super::{ConnInfo, Shared};
use crate::watchers::WatcherGuard;

pub(crate) fn handle(shared: &Shared, conn: &ConnInfo) -> Response<RespBody> {
    let Some(identity) = conn.identity.clone() else {
        warn!(peer = %conn.peer, "refused watch: no client certificate");
        return ApiFailure::Unauthenticated(
            "GET /v1/watch requires a client certificate (mTLS): get one from POST /v1/certificates first".into(),
        )
        .into_response();
    };
    let guard = shared.watchers.register(identity.clone(), conn.peer);
    info!(%identity, peer = %conn.peer, "watcher connected");

    // One line in flight: the feeding task waits for the client, then sends the latest.
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(feed(
        shared.snapshots.subscribe(),
        tx,
        shared.stopping.clone(),
        guard,
        identity,
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
/// the body; dropping `_guard` takes the watcher off the registry.
async fn feed(
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    tx: mpsc::Sender<Bytes>,
    mut stopping: watch::Receiver<bool>,
    _guard: WatcherGuard,
    identity: SpiffeId,
) {
    loop {
        let snapshot = snapshots.borrow_and_update().clone();
        let Some(line) = encode(&snapshot) else { break };
        tokio::select! {
            sent = tx.send(line) => if sent.is_err() { break },
            _ = stopping.wait_for(|stop| *stop) => break,
        }
        tokio::select! {
            changed = snapshots.changed() => if changed.is_err() { break },
            () = tx.closed() => break,
            _ = stopping.wait_for(|stop| *stop) => break,
        }
    }
    info!(%identity, "watcher disconnected");
}

fn encode(snapshot: &Snapshot) -> Option<Bytes> {
    match serde_json::to_vec(snapshot) {
        Ok(mut line) => {
            line.push(b'\n');
            Some(Bytes::from(line))
        }
        Err(e) => {
            warn!("cannot encode snapshot {}: {e}", snapshot.version);
            None
        }
    }
}
