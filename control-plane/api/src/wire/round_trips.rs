//! Property tests: every wire type comes back equal from its JSON, whatever its values.
//! The control plane and the proxies are built from the same types, so a value one side
//! writes that the other reads differently (a float, a duration, an empty list, a string
//! with escapes) is a config silently changed on the way.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::*;
use crate::duration::HumanDuration;
use crate::resource::{RequestMatch, TargetRef};
use crate::server_policy::{
    Authorization, AuthorizationDefault, AuthorizationRule, Concurrency, MtlsMode, RateLimit,
};
use crate::traffic_policy::{
    BackendRef, BackoffSpec, BulkheadSpec, CircuitBreaker, FailureRateSpec, Fallback, LoadBalancer,
    Retries, RetryBudgetSpec, RouteSpec, Timeouts,
};

/// Enough cases to meet the odd float or escape, few enough for a debug build's seconds.
const CASES: u32 = 64;

fn round_trips<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) {
    let json = serde_json::to_string(value).expect("serializes");
    assert!(!json.contains('\n'), "one line on the watch stream: {json}");
    let back: T = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(&back, value, "{json}");
}

// Strategies of nested types are boxed: unboxed, their value trees are moved whole on
// the stack, which overflows a debug build's test thread.

/// Names and addresses, and now and then any text at all (escapes, non-ASCII).
fn text() -> impl Strategy<Value = String> {
    prop_oneof![4 => "[a-z0-9.:/-]{0,12}", 1 => any::<String>()]
}

fn texts(max: usize) -> impl Strategy<Value = Vec<String>> {
    vec(text(), 0..max)
}

fn map() -> impl Strategy<Value = BTreeMap<String, String>> {
    btree_map(text(), text(), 0..3)
}

/// Any duration a policy can hold: written to the millisecond, up to the largest.
fn duration() -> impl Strategy<Value = HumanDuration> {
    prop_oneof![
        (0u64..100_000_000).prop_map(Duration::from_millis),
        any::<u64>().prop_map(Duration::from_millis),
        (any::<u64>(), 0u32..1000)
            .prop_map(|(secs, ms)| Duration::from_secs(secs) + Duration::from_millis(ms.into())),
    ]
    .prop_map(HumanDuration)
}

/// Floats as JSON can carry them (NaN and infinities are refused by validation).
fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        0.0..=1.0,
        any::<f64>().prop_filter("finite", |f| f.is_finite())
    ]
}

fn target_ref() -> impl Strategy<Value = TargetRef> {
    (text(), text()).prop_map(|(kind, name)| TargetRef { kind, name })
}

fn request_match() -> BoxedStrategy<RequestMatch> {
    (option::of(text()), texts(3), map())
        .prop_map(|(path_prefix, methods, headers)| RequestMatch {
            path_prefix,
            methods,
            headers,
        })
        .boxed()
}

fn timeouts() -> BoxedStrategy<Timeouts> {
    (
        option::of(duration()),
        option::of(duration()),
        option::of(duration()),
    )
        .prop_map(|(connect, request, idle)| Timeouts {
            connect,
            request,
            idle,
        })
        .boxed()
}

fn retries() -> BoxedStrategy<Retries> {
    let backoff = (duration(), duration()).prop_map(|(base, max)| BackoffSpec { base, max });
    let budget = (float(), any::<u32>(), duration()).prop_map(|(ratio, min_per_second, window)| {
        RetryBudgetSpec {
            ratio,
            min_per_second,
            window,
        }
    });
    (
        option::of(any::<u32>()),
        option::of(duration()),
        option::of(texts(3)),
        option::of(backoff),
        option::of(budget),
        option::of(any::<bool>()),
    )
        .prop_map(
            |(attempts, per_try_timeout, retry_on, backoff, budget, non_idempotent)| Retries {
                attempts,
                per_try_timeout,
                retry_on,
                backoff,
                budget,
                non_idempotent,
            },
        )
        .boxed()
}

fn circuit_breaker() -> BoxedStrategy<CircuitBreaker> {
    let rate = (float(), any::<u32>(), duration()).prop_map(|(threshold, min_requests, window)| {
        FailureRateSpec {
            threshold,
            min_requests,
            window,
        }
    });
    (
        option::of(any::<u32>()),
        option::of(rate),
        option::of(duration()),
        option::of(duration()),
        option::of(any::<u32>()),
    )
        .prop_map(
            |(consecutive_failures, failure_rate, base_ejection, max_ejection, percent)| {
                CircuitBreaker {
                    consecutive_failures,
                    failure_rate,
                    base_ejection,
                    max_ejection,
                    max_ejected_percent: percent,
                }
            },
        )
        .boxed()
}

fn bulkhead() -> BoxedStrategy<BulkheadSpec> {
    (
        option::of(any::<u32>()),
        option::of(any::<u32>()),
        option::of(any::<u32>()),
        option::of(duration()),
    )
        .prop_map(|(concurrent, pending, connections, queue)| BulkheadSpec {
            max_concurrent_requests: concurrent,
            max_pending_requests: pending,
            max_connections_per_endpoint: connections,
            queue_timeout: queue,
        })
        .boxed()
}

fn fallback() -> BoxedStrategy<Fallback> {
    (any::<u16>(), text(), map())
        .prop_map(|(status, body, headers)| Fallback {
            status,
            body,
            headers,
        })
        .boxed()
}

fn backends() -> impl Strategy<Value = Vec<BackendRef>> {
    vec(
        (text(), any::<u32>()).prop_map(|(service, weight)| BackendRef { service, weight }),
        0..3,
    )
}

fn load_balancer() -> impl Strategy<Value = LoadBalancer> {
    prop_oneof![
        Just(LoadBalancer::PeakEwma),
        Just(LoadBalancer::LeastRequest),
        Just(LoadBalancer::RoundRobin),
    ]
}

fn route() -> BoxedStrategy<RouteSpec> {
    (
        option::of(text()),
        request_match(),
        option::of(timeouts()),
        option::of(retries()),
        option::of(fallback()),
        option::of(backends()),
    )
        .prop_map(
            |(name, matches, timeouts, retries, fallback, backends)| RouteSpec {
                name,
                matches,
                timeouts,
                retries,
                fallback,
                backends,
            },
        )
        .boxed()
}

fn traffic_policy() -> BoxedStrategy<TrafficPolicySpec> {
    (
        target_ref(),
        option::of(timeouts()),
        option::of(retries()),
        option::of(circuit_breaker()),
        option::of(bulkhead()),
        option::of(load_balancer()),
        option::of(fallback()),
        vec(route(), 0..2),
        backends(),
    )
        .prop_map(
            |(target_ref, timeouts, retries, breaker, bulkhead, lb, fallback, routes, backends)| {
                TrafficPolicySpec {
                    target_ref,
                    timeouts,
                    retries,
                    circuit_breaker: breaker,
                    bulkhead,
                    load_balancer: lb,
                    fallback,
                    routes,
                    backends,
                }
            },
        )
        .boxed()
}

fn server_policy() -> BoxedStrategy<ServerPolicySpec> {
    let rule = (texts(3), option::of(request_match()))
        .prop_map(|(from, matches)| AuthorizationRule { from, matches });
    let default = prop_oneof![
        Just(AuthorizationDefault::Deny),
        Just(AuthorizationDefault::Allow)
    ];
    let authorization =
        (default, vec(rule, 0..3)).prop_map(|(default, rules)| Authorization { default, rules });
    let rate = (any::<u32>(), option::of(any::<u32>())).prop_map(|(rps, burst)| RateLimit {
        requests_per_second: rps,
        burst,
    });
    let concurrency = (option::of(any::<u32>()), option::of(any::<bool>()))
        .prop_map(|(max, adaptive)| Concurrency { max, adaptive });
    let mtls = prop_oneof![Just(MtlsMode::Strict), Just(MtlsMode::Permissive)];
    (
        target_ref(),
        mtls,
        option::of(authorization),
        option::of(rate),
        option::of(concurrency),
    )
        .prop_map(
            |(target_ref, mtls, authorization, rate_limit, concurrency)| ServerPolicySpec {
                target_ref,
                mtls,
                authorization,
                rate_limit,
                concurrency,
            },
        )
        .boxed()
}

fn service() -> BoxedStrategy<ServiceView> {
    let protocol = prop_oneof![
        Just(Protocol::Http),
        Just(Protocol::Grpc),
        Just(Protocol::Tcp)
    ];
    let endpoints = vec(text().prop_map(|address| EndpointView { address }), 0..3);
    (
        (text(), text(), text()),
        protocol,
        texts(2),
        endpoints,
        option::of(traffic_policy()),
    )
        .prop_map(
            |((name, namespace, identity), protocol, addresses, endpoints, traffic_policy)| {
                ServiceView {
                    name,
                    namespace,
                    identity,
                    protocol,
                    addresses,
                    endpoints,
                    traffic_policy,
                }
            },
        )
        .boxed()
}

fn watch_event() -> BoxedStrategy<WatchEvent> {
    let full = (
        any::<u64>(),
        text(),
        vec(service(), 0..3),
        option::of(server_policy()),
    )
        .prop_map(|(version, trust_bundle, services, server_policy)| {
            WatchEvent::Full(Snapshot {
                version,
                trust_bundle,
                services,
                server_policy,
            })
        });
    let removed = vec(
        (text(), text()).prop_map(|(namespace, name)| ServiceRef { namespace, name }),
        0..3,
    );
    let update = option::of(server_policy()).prop_map(|spec| ServerPolicyUpdate { spec });
    let delta = (
        (any::<u64>(), any::<u64>()),
        option::of(text()),
        vec(service(), 0..3),
        removed,
        option::of(update),
    )
        .prop_map(
            |((version, base), trust_bundle, upserted, removed, server_policy)| {
                WatchEvent::Delta(SnapshotDelta {
                    version,
                    base,
                    trust_bundle,
                    upserted,
                    removed,
                    server_policy,
                })
            },
        );
    prop_oneof![full, delta].boxed()
}

fn heartbeat() -> impl Strategy<Value = Heartbeat> {
    let instance = (text(), text(), text(), any::<bool>()).prop_map(
        |(service, namespace, address, healthy)| Instance {
            service,
            namespace,
            address,
            healthy,
        },
    );
    (text(), any::<u64>(), option::of(instance)).prop_map(
        |(proxy_id, applied_version, instance)| Heartbeat {
            proxy_id,
            applied_version,
            instance,
        },
    )
}

fn mesh_status() -> impl Strategy<Value = MeshStatus> {
    let proxy = (
        (text(), text(), option::of(text()), text()),
        (any::<u64>(), any::<u64>(), any::<bool>()),
    )
        .prop_map(
            |((proxy_id, identity, service, address), (applied, seen, connected))| ProxyStatus {
                proxy_id,
                identity,
                service,
                address,
                applied_version: applied,
                last_seen_ms_ago: seen,
                connected,
            },
        );
    (any::<u64>(), any::<bool>(), texts(3), vec(proxy, 0..3)).prop_map(
        |(version, converged, config_errors, proxies)| MeshStatus {
            version,
            converged,
            config_errors,
            proxies,
        },
    )
}

/// Found by `watch_events_round_trip`: without serde_json's `float_roundtrip`, this
/// ratio came back one unit off in its last place.
#[test]
fn a_long_mantissa_comes_back_exact() {
    round_trips(&RetryBudgetSpec {
        ratio: 1.863_104_364_849_374_2e-165,
        min_per_second: 1,
        window: HumanDuration(Duration::from_secs(10)),
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn watch_events_round_trip(event in watch_event()) {
        round_trips(&event);
    }

    #[test]
    fn heartbeats_and_status_round_trip(heartbeat in heartbeat(), status in mesh_status()) {
        round_trips(&heartbeat);
        round_trips(&status);
        round_trips(&HeartbeatResponse { expires_in_ms: heartbeat.applied_version });
    }

    #[test]
    fn certificate_exchange_round_trips(csr in text(), token in option::of(text()), expires_at in any::<i64>()) {
        let request = CertificateRequest { csr: csr.clone(), token: token.clone() };
        let json = serde_json::to_string(&request).expect("serializes");
        let back: CertificateRequest = serde_json::from_str(&json).expect("deserializes");
        prop_assert_eq!((back.csr, back.token), (csr.clone(), token));
        let response = CertificateResponse { certificate_chain: csr.clone(), trust_bundle: csr, expires_at };
        let json = serde_json::to_string(&response).expect("serializes");
        let back: CertificateResponse = serde_json::from_str(&json).expect("deserializes");
        prop_assert_eq!(back.expires_at, expires_at);
        prop_assert_eq!(back.certificate_chain, response.certificate_chain);
    }
}
