//! The queries over the store: golden metrics per edge and service over a range of
//! windows, and per service per window. Closed windows never change (reports always go
//! to the current one), so what was computed from them is kept until the next window
//! closes: a dashboard polling every 2 s merges each window once, not every poll.

use std::collections::{BTreeMap, HashMap};

use outrigger_api::{EdgeStats, Golden, ServiceStats, ServiceTimeline, Side};

use super::golden::Accumulator;
use super::ring::Counts;
use super::store::State;

/// Per edge (caller, service): the client side's and the server side's counts.
type EdgeSums = BTreeMap<(String, String), [Counts; 2]>;

#[derive(Debug, Default)]
pub(crate) struct Cache {
    /// Per range length (in windows): the window it was computed in, and the sums of
    /// the closed windows of that range.
    ranges: HashMap<u64, (u64, EdgeSums)>,
    /// Per closed window: each service's golden metrics in it.
    points: BTreeMap<u64, BTreeMap<String, Golden>>,
}

fn side_index(side: Side) -> usize {
    match side {
        Side::Client => 0,
        Side::Server => 1,
    }
}

/// The sums of windows `from..=to` of every series, per edge.
fn sums(state: &State, from: u64, to: u64) -> EdgeSums {
    let mut edges = EdgeSums::new();
    for (key, ring) in &state.series {
        let mut windows = ring.between(from, to).peekable();
        if windows.peek().is_none() {
            continue;
        }
        let sides = edges
            .entry((key.caller.clone(), key.service.clone()))
            .or_default();
        for (_, counts) in windows {
            sides[side_index(key.side)].absorb(counts);
        }
    }
    edges
}

/// The client side if the caller's sidecar reported (it also saw the calls that never
/// reached the callee), else the server side.
fn chosen(sides: &[Counts; 2]) -> (Side, &Counts) {
    if sides[0].requests > 0 || sides[1].requests == 0 {
        (Side::Client, &sides[0])
    } else {
        (Side::Server, &sides[1])
    }
}

/// Services and edges over the `windows` windows ending with `now` (the current one).
pub(crate) fn golden(
    state: &mut State,
    windows: u64,
    now: u64,
    covered_secs: f64,
) -> (Vec<ServiceStats>, Vec<EdgeStats>) {
    let from = (now + 1).saturating_sub(windows);
    let fresh = matches!(state.cache.ranges.get(&windows), Some((at, _)) if *at == now);
    if !fresh {
        let closed = if now > from {
            sums(state, from, now - 1)
        } else {
            EdgeSums::new()
        };
        state.cache.ranges.insert(windows, (now, closed));
    }
    let mut all = state.cache.ranges[&windows].1.clone();
    for (edge, current) in sums(state, now, now) {
        let sides = all.entry(edge).or_default();
        for (sum, add) in sides.iter_mut().zip(&current) {
            sum.absorb(add);
        }
    }
    let mut edges = Vec::new();
    let mut services: BTreeMap<&str, Accumulator> = BTreeMap::new();
    for ((caller, service), sides) in &all {
        let (side, counts) = chosen(sides);
        let edge = Accumulator::from(counts);
        if edge.is_empty() {
            continue;
        }
        services.entry(service).or_default().add(counts);
        edges.push(EdgeStats {
            caller: caller.clone(),
            service: service.clone(),
            side,
            golden: edge.golden(covered_secs),
        });
    }
    // All the callers of a service together.
    edges.sort_by(|a, b| (&a.service, &a.caller).cmp(&(&b.service, &b.caller)));
    let services = services
        .into_iter()
        .map(|(service, acc)| ServiceStats {
            service: service.to_string(),
            golden: acc.golden(covered_secs),
        })
        .collect();
    (services, edges)
}

/// Each service's golden metrics in one window.
fn points_in(state: &State, window: u64, secs: f64) -> BTreeMap<String, Golden> {
    let mut services: BTreeMap<String, Accumulator> = BTreeMap::new();
    for ((_, service), sides) in sums(state, window, window) {
        services.entry(service).or_default().add(chosen(&sides).1);
    }
    services
        .into_iter()
        .filter(|(_, acc)| !acc.is_empty())
        .map(|(service, acc)| (service, acc.golden(secs)))
        .collect()
}

/// Per service, its golden metrics in each window `from..=now`.
pub(crate) fn timeline(state: &mut State, from: u64, now: u64, secs: f64) -> Vec<ServiceTimeline> {
    state.cache.points.retain(|w, _| *w >= from && *w < now);
    for window in from..now {
        if !state.cache.points.contains_key(&window) {
            let points = points_in(state, window, secs);
            state.cache.points.insert(window, points);
        }
    }
    let current = points_in(state, now, secs);
    let windows: Vec<&BTreeMap<String, Golden>> = state
        .cache
        .points
        .range(from..now)
        .map(|(_, p)| p)
        .chain([&current])
        .collect();
    let mut names: Vec<&String> = windows.iter().flat_map(|p| p.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|service| ServiceTimeline {
            service: service.clone(),
            points: windows.iter().map(|p| p.get(service).cloned()).collect(),
        })
        .collect()
}

/// Bytes held by the cache, for the memory measurement.
pub(crate) fn cache_bytes(state: &State) -> usize {
    let ranges: usize = state
        .cache
        .ranges
        .values()
        .flat_map(|(_, sums)| sums.iter())
        .map(|((caller, service), sides)| {
            caller.capacity()
                + service.capacity()
                + std::mem::size_of::<[Counts; 2]>()
                + sides.iter().map(|c| c.latency.heap_bytes()).sum::<usize>()
        })
        .sum();
    let points: usize = state
        .cache
        .points
        .values()
        .flat_map(|p| p.keys())
        .map(|service| service.capacity() + std::mem::size_of::<Golden>())
        .sum();
    ranges + points
}
