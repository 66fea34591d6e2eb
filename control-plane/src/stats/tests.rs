//! The store end to end within the process: reports in, golden metrics out, windows
//! moving with (paused) time, the cap on series, and memory with 1,000 edges.

use std::time::Duration;

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Serializer as _, V2Serializer};
use outrigger_api::{CircuitView, ResilienceReport, SeriesReport, Side, StatsReport};
use outrigger_certs::SpiffeId;

use super::golden::LATENCY_MAX_MICROS;
use super::ring::{Counts, WINDOWS};
use super::sparse::Sparse;
use super::store::SeriesKey;
use super::{StatsStore, windows_in};

const WINDOW: Duration = Duration::from_secs(10);

fn histogram(micros: impl IntoIterator<Item = u64>) -> Histogram<u32> {
    let mut h = Histogram::new_with_bounds(1, LATENCY_MAX_MICROS, 3).unwrap();
    for v in micros {
        h.record(v).unwrap();
    }
    h
}

fn series(
    side: Side,
    service: &str,
    caller: Option<&str>,
    h: &Histogram<u32>,
    ok: u64,
) -> SeriesReport {
    let mut bytes = Vec::new();
    V2Serializer::new().serialize(h, &mut bytes).unwrap();
    SeriesReport {
        side,
        service: service.into(),
        caller: caller.map(Into::into),
        requests: h.len(),
        successes: ok,
        latency: base64::engine::general_purpose::STANDARD.encode(bytes),
    }
}

fn id(short: &str) -> SpiffeId {
    SpiffeId::from_short("cluster.local", short).unwrap()
}

fn report(series: Vec<SeriesReport>) -> StatsReport {
    StatsReport {
        proxy_id: "p-1".into(),
        series,
        resilience: vec![],
    }
}

#[tokio::test(start_paused = true)]
async fn merges_two_sidecars_exactly_and_counts_each_call_once() {
    let store = StatsStore::new(WINDOW, 100, usize::MAX);
    let fast = histogram((0..300).map(|i| 2_000 + i * 3));
    let slow = histogram((0..100).map(|i| 40_000 + i * 150));
    // orders and billing call payments (client side); payments' own sidecar saw the
    // same calls (server side) and one from a plaintext caller.
    let orders = id("shop/orders");
    let billing = id("shop/billing");
    store
        .ingest(
            &orders,
            &report(vec![series(
                Side::Client,
                "payments.shop",
                None,
                &fast,
                290,
            )]),
        )
        .unwrap();
    store
        .ingest(
            &billing,
            &report(vec![series(
                Side::Client,
                "payments.shop",
                None,
                &slow,
                100,
            )]),
        )
        .unwrap();
    let plain = histogram([7_000]);
    store
        .ingest(
            &id("shop/payments"),
            &report(vec![
                series(
                    Side::Server,
                    "payments.shop",
                    Some(orders.as_str()),
                    &fast,
                    290,
                ),
                series(
                    Side::Server,
                    "payments.shop",
                    Some(billing.as_str()),
                    &slow,
                    100,
                ),
                series(Side::Server, "payments.shop", None, &plain, 1),
            ]),
        )
        .unwrap();
    tokio::time::advance(Duration::from_secs(5)).await;
    let stats = store.query("1m", 6);
    assert_eq!(stats.services.len(), 1);
    let payments = &stats.services[0].golden;
    assert_eq!(
        payments.requests, 401,
        "client sides, plus the plaintext caller's"
    );
    assert_eq!(payments.successes, 391);
    let mut union = fast.clone();
    union.add(&slow).unwrap();
    union.add(&plain).unwrap();
    let ms = |v: u64| Some(v as f64 / 1000.0);
    assert_eq!(payments.p50_ms, ms(union.value_at_quantile(0.5)));
    assert_eq!(payments.p99_ms, ms(union.value_at_quantile(0.99)));
    assert_eq!(payments.p999_ms, ms(union.value_at_quantile(0.999)));
    assert_eq!(payments.max_ms, ms(union.max()));
    assert_eq!(payments.rate, 401.0 / 5.0);
    let edges: Vec<(&str, Side, u64)> = stats
        .edges
        .iter()
        .map(|e| (e.caller.as_str(), e.side, e.golden.requests))
        .collect();
    assert_eq!(
        edges,
        [
            ("shop/billing", Side::Client, 100),
            ("shop/orders", Side::Client, 300),
            ("unauthenticated", Side::Server, 1)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn windows_slide_and_expire() {
    let store = StatsStore::new(WINDOW, 100, usize::MAX);
    let orders = id("shop/orders");
    let one = |ms: u64| {
        report(vec![series(
            Side::Client,
            "payments.shop",
            None,
            &histogram([ms * 1000]),
            1,
        )])
    };
    store.ingest(&orders, &one(5)).unwrap();
    tokio::time::advance(Duration::from_secs(61)).await;
    store.ingest(&orders, &one(80)).unwrap();
    let last_minute = store.query("1m", windows_in("1m", WINDOW).unwrap());
    assert_eq!(
        last_minute.services[0].golden.requests, 1,
        "the first fell out"
    );
    let p50 = |ms: u64| Some(histogram([ms * 1000]).value_at_quantile(0.5) as f64 / 1000.0);
    assert_eq!(last_minute.services[0].golden.p50_ms, p50(80));
    let five = store.query("5m", windows_in("5m", WINDOW).unwrap());
    assert_eq!(five.services[0].golden.requests, 2);
    let timeline = store.timeline();
    assert_eq!(timeline.services[0].points.len(), WINDOWS as usize);
    let measured: Vec<f64> = timeline.services[0]
        .points
        .iter()
        .flatten()
        .filter_map(|g| g.p50_ms)
        .collect();
    assert_eq!(measured, [p50(5).unwrap(), p50(80).unwrap()]);
    tokio::time::advance(WINDOW * WINDOWS as u32).await;
    assert!(
        store.query("15m", 90).services.is_empty(),
        "15 minutes later"
    );
    assert!(store.timeline().services.is_empty());
}

#[tokio::test(start_paused = true)]
async fn series_are_capped_and_bad_reports_refused_whole() {
    let store = StatsStore::new(WINDOW, 2, usize::MAX);
    let h = histogram([1_000]);
    let three = report(
        ["a.shop", "b.shop", "c.shop"]
            .iter()
            .map(|s| series(Side::Client, s, None, &h, 1))
            .collect(),
    );
    assert_eq!(store.ingest(&id("shop/orders"), &three).unwrap(), 2);
    assert_eq!(store.query("1m", 6).refused_series, 1);
    let mut bad = series(Side::Client, "a.shop", None, &h, 1);
    bad.latency = "not base64!".into();
    assert!(
        store
            .ingest(&id("shop/orders"), &report(vec![bad]))
            .is_err()
    );
    let mut bad = series(Side::Server, "a.shop", Some("orders"), &h, 1);
    assert!(
        store
            .ingest(&id("shop/orders"), &report(vec![bad.clone()]))
            .is_err()
    );
    bad.caller = None;
    bad.service = "a shop".into();
    assert!(
        store
            .ingest(&id("shop/orders"), &report(vec![bad]))
            .is_err()
    );
    assert_eq!(store.query("1m", 6).services[0].golden.requests, 1);
    assert_eq!(windows_in("2m", WINDOW), None);
}

#[tokio::test(start_paused = true)]
async fn resilience_is_the_last_report_with_counts_summed() {
    let store = StatsStore::new(WINDOW, 10, usize::MAX);
    let pressure = |retries| StatsReport {
        proxy_id: "orders-1".into(),
        series: vec![],
        resilience: vec![ResilienceReport {
            service: "payments.shop".into(),
            retries,
            bulkhead_in_flight: 3,
            bulkhead_limit: 10,
            circuits: vec![CircuitView {
                endpoint: "127.0.0.1:1".into(),
                state: "open".into(),
            }],
            ..ResilienceReport::default()
        }],
    };
    store.ingest(&id("shop/orders"), &pressure(2)).unwrap();
    tokio::time::advance(WINDOW).await;
    store.ingest(&id("shop/orders"), &pressure(3)).unwrap();
    let stats = store.query("1m", 6);
    assert_eq!(stats.resilience.len(), 1);
    let r = &stats.resilience[0];
    assert_eq!(
        (r.caller.as_str(), r.proxy_id.as_str()),
        ("shop/orders", "orders-1")
    );
    assert_eq!(r.report.retries, 5);
    assert_eq!(r.report.circuits[0].state, "open");
    assert_eq!(store.query("1m", 1).resilience[0].report.retries, 3);
}

/// The memory of a full ring: 1,000 edges, both sides, 90 windows, each window of each
/// series `calls` latencies spread over 1–250 ms (most fast, a long tail). Prints what it
/// measured; docs/observability.md quotes it.
async fn fill_and_measure(calls: usize) -> usize {
    const EDGES: usize = 1_000;
    let store = StatsStore::new(WINDOW, 2 * EDGES, usize::MAX);
    let shapes: Vec<Counts> = (0..8u64)
        .map(|k| {
            let mut rng = fastrand::Rng::with_seed(k);
            let h = histogram((0..calls).map(|_| {
                let u = rng.f64();
                (1_000.0 * 250f64.powf(u * u)) as u64
            }));
            Counts {
                requests: calls as u64,
                successes: calls as u64,
                latency: Sparse::of(&h),
            }
        })
        .collect();
    let buckets: usize = shapes[0].latency.iter().count();
    for window in 0..WINDOWS as usize {
        let decoded = (0..EDGES)
            .flat_map(|e| {
                [Side::Client, Side::Server].map(|side| {
                    let key = SeriesKey {
                        caller: format!("shop/caller-{}", e % 50),
                        service: format!("service-{e}.shop"),
                        side,
                    };
                    (key, shapes[(e + window) % shapes.len()].clone())
                })
            })
            .collect();
        assert_eq!(store.store(decoded), 2 * EDGES);
        if window + 1 < WINDOWS as usize {
            tokio::time::advance(WINDOW).await;
        }
    }
    let started = std::time::Instant::now();
    let stats = store.query("1m", 6);
    let first = started.elapsed();
    let started = std::time::Instant::now();
    store.query("1m", 6);
    let again = started.elapsed();
    assert_eq!(stats.edges.len(), EDGES);
    assert_eq!(stats.services[0].golden.requests, 6 * calls as u64);
    let bytes = store.heap_bytes();
    println!(
        "{EDGES} edges x 2 sides x {WINDOWS} windows of {calls} calls ({buckets} buckets): \
         {:.1} MiB held ({:.0} bytes per window); 1m query {first:?}, then {again:?} (debug build)",
        bytes as f64 / (1 << 20) as f64,
        bytes as f64 / (2 * EDGES * WINDOWS as usize) as f64
    );
    bytes
}

#[tokio::test(start_paused = true)]
async fn memory_with_a_thousand_edges_at_10_per_second() {
    let bytes = fill_and_measure(100).await;
    assert!(bytes < 64 << 20, "{bytes} bytes");
}

#[tokio::test(start_paused = true)]
async fn memory_with_a_thousand_edges_at_100_per_second() {
    let bytes = fill_and_measure(1_000).await;
    assert!(bytes < 512 << 20, "{bytes} bytes");
}

#[tokio::test(start_paused = true)]
async fn over_the_memory_budget_the_oldest_windows_go_first() {
    let spread = |seed: u64| {
        let mut rng = fastrand::Rng::with_seed(seed);
        histogram((0..200).map(|_| rng.u64(1_000..200_000)))
    };
    let unbounded = StatsStore::new(WINDOW, 100, usize::MAX);
    let orders = id("shop/orders");
    for w in 0..10 {
        let r = report(vec![series(
            Side::Client,
            "payments.shop",
            None,
            &spread(w),
            200,
        )]);
        unbounded.ingest(&orders, &r).unwrap();
        tokio::time::advance(WINDOW).await;
    }
    // A budget of about half of that keeps the newest half.
    let budget = unbounded.heap_bytes() / 2;
    let bounded = StatsStore::new(WINDOW, 100, budget);
    tokio::time::advance(Duration::from_millis(1)).await;
    for w in 0..10 {
        let r = report(vec![series(
            Side::Client,
            "payments.shop",
            None,
            &spread(w),
            200,
        )]);
        bounded.ingest(&orders, &r).unwrap();
        assert!(bounded.heap_bytes() <= budget, "window {w}");
        tokio::time::advance(WINDOW).await;
    }
    let stats = bounded.query("15m", 90);
    assert!(stats.trimmed_windows >= 4, "{}", stats.trimmed_windows);
    let kept = stats.services[0].golden.requests / 200;
    assert!((4..=6).contains(&kept), "{kept} windows kept");
    // What is kept is the newest, exactly.
    let mut newest = histogram([]);
    for w in (10 - kept)..10 {
        newest.add(spread(w)).unwrap();
    }
    assert_eq!(
        stats.services[0].golden.p99_ms,
        Some(newest.value_at_quantile(0.99) as f64 / 1000.0)
    );
}
