//! Live reload of the policy dir. A `notify` watcher (inotify on Linux, recursive) wakes a
//! task; the task waits for the burst of events to settle (an editor's write-then-rename,
//! a ConfigMap's symlink swap, several files saved at once), then loads and validates the
//! whole dir again. A valid set is published (a new version only if something changed);
//! an invalid one is logged, error by error, and exposed in `/metrics` and `/api/status`
//! while the last good version stays in force.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::metrics::Metrics;
use crate::policy::{self, FileCache, PolicyErrors};
use crate::snapshot::SnapshotPublisher;

/// Quiet time after the last event before reloading.
const SETTLE: Duration = Duration::from_millis(100);
/// A dir that never stops changing is still reloaded this often.
const MAX_DELAY: Duration = Duration::from_millis(500);

/// Whether the files on disk are valid now; what `/metrics` and `/api/status` show.
#[derive(Debug, Default)]
pub struct ConfigHealth {
    // A std mutex: held to copy or replace, never across an await.
    errors: Mutex<Vec<String>>,
}

impl ConfigHealth {
    /// The errors of the last reload; empty when the files are valid.
    pub fn errors(&self) -> Vec<String> {
        self.lock().clone()
    }

    pub fn is_valid(&self) -> bool {
        self.lock().is_empty()
    }

    pub(crate) fn set(&self, errors: Vec<String>) {
        *self.lock() = errors;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.errors.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    /// Valid and different: published as this version.
    Published(u64),
    /// Valid and the same as what is served: nothing pushed.
    Unchanged,
    /// Invalid: the last good version is still served.
    Invalid(PolicyErrors),
}

/// Loads the policy dir and publishes it if valid.
#[derive(Clone, Debug)]
pub struct Reloader {
    pub dir: PathBuf,
    pub trust_domain: String,
    pub publisher: SnapshotPublisher,
    pub health: Arc<ConfigHealth>,
    pub metrics: Arc<Metrics>,
    /// The files as last parsed: a reload parses only those that changed.
    pub files: Arc<Mutex<FileCache>>,
}

impl Reloader {
    /// One reload (blocking file I/O).
    pub fn reload(&self) -> Reloaded {
        let started = std::time::Instant::now();
        let loaded = {
            let mut files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
            policy::check_paths_cached(
                std::slice::from_ref(&self.dir),
                &self.trust_domain,
                &mut files,
            )
            .result
        };
        let read = started.elapsed();
        match loaded {
            Ok(policy) => {
                self.health.set(Vec::new());
                self.metrics.reloaded(true);
                match self.publisher.publish_policy(policy) {
                    Some(version) => {
                        info!(
                            version,
                            read_ms = read.as_millis() as u64,
                            published_ms = started.elapsed().as_millis() as u64,
                            "policy reloaded from {}",
                            self.dir.display()
                        );
                        Reloaded::Published(version)
                    }
                    None => {
                        debug!("policy dir changed on disk, but not its content");
                        Reloaded::Unchanged
                    }
                }
            }
            Err(errors) => {
                let version = self.publisher.current().version;
                warn!(
                    "policy reload failed with {} error(s); still serving version {version}",
                    errors.0.len()
                );
                for line in errors.lines() {
                    warn!("{line}");
                }
                self.health.set(errors.lines());
                self.metrics.reloaded(false);
                Reloaded::Invalid(errors)
            }
        }
    }
}

/// Watches `dir` recursively; each relevant change wakes the returned receiver. The
/// watcher stops when dropped.
pub fn watch_dir(dir: &Path) -> notify::Result<(notify::RecommendedWatcher, mpsc::Receiver<()>)> {
    watch_dir_for(dir, "the policy dir")
}

/// [`watch_dir`], naming the dir as `what` in its warnings.
pub fn watch_dir_for(
    dir: &Path,
    what: &'static str,
) -> notify::Result<(notify::RecommendedWatcher, mpsc::Receiver<()>)> {
    // One pending wake-up is enough: a reload reads everything anyway.
    let (tx, rx) = mpsc::channel(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        match event {
            // Opening and reading (our own reloads included) changes nothing.
            Ok(event) if matches!(event.kind, EventKind::Access(_)) => {}
            Ok(_) => {
                let _ = tx.try_send(());
            }
            Err(e) => {
                warn!("watching {what}: {e}");
                let _ = tx.try_send(());
            }
        }
    })?;
    watcher.watch(dir, RecursiveMode::Recursive)?;
    Ok((watcher, rx))
}

/// Reloads after each settled burst of changes until `stopping`.
pub async fn run(
    reloader: Reloader,
    watcher: notify::RecommendedWatcher,
    mut changes: mpsc::Receiver<()>,
    mut stopping: watch::Receiver<bool>,
) {
    // Kept alive for as long as this task runs.
    let _watcher = watcher;
    while settled_change(&mut changes, &mut stopping).await {
        let reloader = reloader.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || reloader.reload()).await {
            warn!("policy reload panicked: {e}");
        }
    }
}

/// Waits for a change, then for the burst it starts to settle; false once the watcher
/// is gone or `stopping`.
pub(crate) async fn settled_change(
    changes: &mut mpsc::Receiver<()>,
    stopping: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        changed = changes.recv() => if changed.is_none() { return false },
        _ = stopping.wait_for(|stop| *stop) => return false,
    }
    let deadline = tokio::time::Instant::now() + MAX_DELAY;
    loop {
        let wait = SETTLE.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        match tokio::time::timeout(wait, changes.recv()).await {
            Ok(Some(())) if wait > Duration::ZERO => continue,
            Ok(None) => return false,
            _ => return true,
        }
    }
}
