//! Where the sidecars' reports go: one [`Ring`] per series (side, caller, callee), the
//! resilience state of each sidecar's callees, and the queries behind `/api/stats`.
//!
//! Keying. A call through the mesh is measured by the caller's sidecar (client side) and
//! by the callee's (server side). Both are kept, apart. A view picks one side per edge
//! and per window: the client side if the caller's sidecar reported in that window (it
//! also sees the calls that never reached the callee: no endpoints, open circuits,
//! timeouts), else the server side (a caller without a sidecar). A service's numbers are
//! the sum of its edges', so each call is counted once in every view.
//!
//! Memory. At most `max_series` series (a new one beyond is refused and counted), each
//! at most [`WINDOWS`] windows, each window a sparse histogram (about 2.4 bytes per
//! bucket that counted anything: at most the calls of the window, and at most the
//! ~18,000 buckets of 1 µs to 100 s at 3 digits). Above `max_bytes`, the oldest window of
//! every series is dropped until it fits: history gets shorter, the latest stays exact.
//! Time is tokio's, so that the windows can be tested with paused time.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use outrigger_api::{MeshStats, ResilienceReport, ResilienceStats, Side, StatsReport, Timeline};
use outrigger_certs::SpiffeId;
use tokio::time::Instant;

use super::decode::decode_series;
use super::ring::{Counts, Ring, WINDOWS};
use super::views;

/// The caller of a plaintext (permissive) call: no certificate said who it was.
pub const UNAUTHENTICATED: &str = "unauthenticated";

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct SeriesKey {
    /// `ns/sa` of the caller, or [`UNAUTHENTICATED`].
    pub caller: String,
    pub service: String,
    pub side: Side,
}

/// One sidecar's last resilience report for one service, and its counts per window.
#[derive(Debug)]
struct Pressure {
    caller: String,
    last_window: u64,
    report: ResilienceReport,
    /// (window, retries, budget exhausted, bulkhead rejected), oldest first.
    counts: Vec<(u64, [u64; 3])>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub series: HashMap<SeriesKey, Ring>,
    /// By (proxy id, service).
    pressure: HashMap<(String, String), Pressure>,
    refused: u64,
    /// Heap bytes of the series and their windows.
    bytes: usize,
    /// Windows dropped early to stay within `max_bytes`.
    trimmed: u64,
    /// What queries computed from closed windows, which never change again.
    pub cache: views::Cache,
}

pub struct StatsStore {
    window: Duration,
    epoch: Instant,
    epoch_unix_ms: u64,
    max_series: usize,
    max_bytes: usize,
    state: Mutex<State>,
}

impl StatsStore {
    /// Windows of `window` (10 s in production); at most `max_series` series and
    /// `max_bytes` of windows.
    pub fn new(window: Duration, max_series: usize, max_bytes: usize) -> Self {
        let epoch_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        StatsStore {
            window: window.max(Duration::from_millis(10)),
            epoch: Instant::now(),
            epoch_unix_ms,
            max_series,
            max_bytes,
            state: Mutex::default(),
        }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    fn current_window(&self) -> u64 {
        (self.epoch.elapsed().as_nanos() / self.window.as_nanos()) as u64
    }

    /// Stores a sidecar's report; `reporter` is its certificate's identity. Returns how
    /// many series were stored, or why the report is unreadable (nothing is stored then).
    pub fn ingest(&self, reporter: &SpiffeId, report: &StatsReport) -> Result<usize, String> {
        let reporter_name = short(reporter);
        let mut decoded = Vec::with_capacity(report.series.len());
        for series in &report.series {
            let caller = match series.side {
                Side::Client => reporter_name.clone(),
                Side::Server => match &series.caller {
                    Some(id) => short(
                        &id.parse::<SpiffeId>()
                            .map_err(|e| format!("caller {id:?}: {e}"))?,
                    ),
                    None => UNAUTHENTICATED.to_string(),
                },
            };
            check_service(&series.service)?;
            let key = SeriesKey {
                caller,
                service: series.service.clone(),
                side: series.side,
            };
            decoded.push((key, decode_series(series)?));
        }
        for service in &report.resilience {
            check_service(&service.service)?;
        }
        let accepted = self.store(decoded);
        // Under the lock: a window a query has seen closed never changes again.
        let mut state = self.lock();
        let now = self.current_window();
        for service in &report.resilience {
            let pressure = state
                .pressure
                .entry((report.proxy_id.clone(), service.service.clone()))
                .or_insert_with(|| Pressure {
                    caller: reporter_name.clone(),
                    last_window: now,
                    report: ResilienceReport::default(),
                    counts: Vec::new(),
                });
            let counted = [
                service.retries,
                service.budget_exhausted,
                service.bulkhead_rejected,
            ];
            match pressure.counts.last_mut() {
                Some((w, sums)) if *w == now => {
                    for (sum, n) in sums.iter_mut().zip(counted) {
                        *sum += n;
                    }
                }
                _ => pressure.counts.push((now, counted)),
            }
            pressure.counts.retain(|(w, _)| w + WINDOWS > now);
            pressure.caller = reporter_name.clone();
            pressure.last_window = now;
            pressure.report = service.clone();
        }
        Ok(accepted)
    }

    /// Adds decoded series to the current window; returns how many were stored.
    pub(crate) fn store(&self, decoded: Vec<(SeriesKey, Counts)>) -> usize {
        // Under the lock: a window a query has seen closed never changes again.
        let mut state = self.lock();
        let now = self.current_window();
        let mut accepted = 0;
        for (key, counts) in decoded {
            let full = state.series.len() >= self.max_series;
            let grown = match state.series.get_mut(&key) {
                Some(ring) => {
                    let before = ring.heap_bytes();
                    ring.add(now, &counts);
                    ring.heap_bytes().saturating_sub(before)
                }
                None if full => {
                    state.refused += 1;
                    continue;
                }
                None => {
                    let bytes = series_bytes(&key);
                    let ring = state.series.entry(key).or_default();
                    ring.add(now, &counts);
                    bytes + ring.heap_bytes()
                }
            };
            state.bytes += grown;
            accepted += 1;
        }
        while state.bytes > self.max_bytes && trim_oldest(&mut state, now) {}
        accepted
    }

    /// Golden metrics over the last `windows` windows, the current one included.
    pub fn query(&self, window_name: &str, windows: u64) -> MeshStats {
        let mut state = self.lock();
        let now = self.current_window();
        let from = (now + 1).saturating_sub(windows.max(1));
        let covered = self
            .epoch
            .elapsed()
            .saturating_sub(self.window * from as u32)
            .as_secs_f64();
        expire(&mut state, now);
        let (services, edges) = views::golden(&mut state, windows.max(1), now, covered);
        let resilience = pressure(&state, from);
        MeshStats {
            window: window_name.to_string(),
            covered_secs: covered,
            services,
            edges,
            resilience,
            refused_series: state.refused,
            trimmed_windows: state.trimmed,
        }
    }

    /// Each service's golden metrics per window, over the whole ring.
    pub fn timeline(&self) -> Timeline {
        let mut state = self.lock();
        let now = self.current_window();
        let from = (now + 1).saturating_sub(WINDOWS);
        expire(&mut state, now);
        let secs = self.window.as_secs_f64();
        // Always the whole ring, so that a chart's x axis is always 15 minutes: windows
        // before the start are empty.
        let before_start = WINDOWS - (now + 1 - from);
        let mut services = views::timeline(&mut state, from, now, secs);
        for service in &mut services {
            let measured = std::mem::take(&mut service.points);
            service.points = std::iter::repeat_n(None, before_start as usize)
                .chain(measured)
                .collect();
        }
        let window_ms = self.window.as_millis() as u64;
        Timeline {
            window_secs: secs,
            start_unix_ms: (self.epoch_unix_ms + from * window_ms)
                .saturating_sub(before_start * window_ms),
            services,
        }
    }

    /// Bytes held by the series (their windows) and the query caches.
    pub fn heap_bytes(&self) -> usize {
        let state = self.lock();
        state.bytes + views::cache_bytes(&state)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Each sidecar's last resilience report per service, its counts summed from `from`.
fn pressure(state: &State, from: u64) -> Vec<ResilienceStats> {
    let mut resilience: Vec<ResilienceStats> = state
        .pressure
        .iter()
        .filter(|(_, p)| p.last_window >= from)
        .map(|((proxy_id, _), p)| {
            let mut report = p.report.clone();
            let sums = p
                .counts
                .iter()
                .filter(|(w, _)| *w >= from)
                .fold([0u64; 3], |acc, (_, c)| {
                    [acc[0] + c[0], acc[1] + c[1], acc[2] + c[2]]
                });
            [
                report.retries,
                report.budget_exhausted,
                report.bulkhead_rejected,
            ] = sums;
            ResilienceStats {
                proxy_id: proxy_id.clone(),
                caller: p.caller.clone(),
                report,
            }
        })
        .collect();
    resilience
        .sort_by(|a, b| (&a.report.service, &a.proxy_id).cmp(&(&b.report.service, &b.proxy_id)));
    resilience
}

/// Drops windows that left the ring, series left empty, and silent sidecars' pressure.
fn expire(state: &mut State, now: u64) {
    state.series.retain(|_, ring| {
        ring.expire(now);
        !ring.is_empty()
    });
    state.bytes = total_bytes(state);
    state.pressure.retain(|_, p| p.last_window + WINDOWS > now);
}

/// Drops the oldest window of the store (never the current one); false if none is left.
fn trim_oldest(state: &mut State, now: u64) -> bool {
    let Some(oldest) = state.series.values().filter_map(Ring::oldest).min() else {
        return false;
    };
    if oldest >= now {
        return false;
    }
    for ring in state.series.values_mut() {
        ring.drop_oldest_if(oldest);
    }
    state.series.retain(|_, ring| !ring.is_empty());
    state.bytes = total_bytes(state);
    state.trimmed += 1;
    // Sums of closed windows may hold the dropped one.
    state.cache = views::Cache::default();
    true
}

fn series_bytes(key: &SeriesKey) -> usize {
    std::mem::size_of::<(SeriesKey, Ring)>() + key.caller.capacity() + key.service.capacity()
}

fn total_bytes(state: &State) -> usize {
    state
        .series
        .iter()
        .map(|(key, ring)| series_bytes(key) + ring.heap_bytes())
        .sum()
}

/// `namespace/service-account`: how `outrigger status` and the policies name identities.
fn short(id: &SpiffeId) -> String {
    format!("{}/{}", id.namespace(), id.service_account())
}

fn check_service(service: &str) -> Result<(), String> {
    let ok = !service.is_empty()
        && service.len() <= 253
        && service
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!("service {service:?} is not a `name.namespace`"))
    }
}
