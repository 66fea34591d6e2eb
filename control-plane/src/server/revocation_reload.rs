//! Applying `outrigger revoke` to a running control plane: the CA dir (which holds
//! `revoked`) is watched, and after each settled change the revocations are read again.
//! A new revocation takes effect at once: requests check the list each time, open watch
//! streams of the identity are cut (they follow the list, `watch.rs`), and its registered
//! instances leave their services' endpoints. A file that fails to parse is logged and
//! the last good list kept.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::Shared;
use crate::reload::settled_change;
use crate::revocation::Revocations;

/// Reloads after each settled burst of changes in `ca/` until the server stops.
pub(crate) async fn run(
    data_dir: PathBuf,
    shared: Arc<Shared>,
    watcher: notify::RecommendedWatcher,
    mut changes: mpsc::Receiver<()>,
) {
    // Kept alive for as long as this task runs.
    let _watcher = watcher;
    let mut stopping = shared.stopping.clone();
    while settled_change(&mut changes, &mut stopping).await {
        let dir = data_dir.clone();
        match tokio::task::spawn_blocking(move || Revocations::load(&dir)).await {
            Ok(Ok(loaded)) => apply(&shared, loaded),
            Ok(Err(e)) => warn!("cannot read the revoked identities (keeping the last list): {e}"),
            Err(e) => warn!("reading the revoked identities panicked: {e}"),
        }
    }
}

/// Uses `loaded` if it differs from the list in force.
fn apply(shared: &Shared, loaded: Revocations) {
    let current = shared.revocations.borrow().clone();
    if *current == loaded {
        return;
    }
    for identity in loaded.newly_revoked(&current) {
        warn!(%identity, "identity revoked: its tokens and certificates issued until now are refused, its watches cut");
        shared.registry.withdraw_identity(identity);
    }
    info!(revoked = loaded.len(), "revoked identities reloaded");
    shared.revocations.send_replace(Arc::new(loaded));
}
