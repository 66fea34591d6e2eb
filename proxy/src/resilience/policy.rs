//! A service's TrafficPolicy resolved once per snapshot into what the data path uses:
//! DESIGN.md's defaults wherever the policy is silent, and routes whose settings override
//! the policy's field by field. A request then looks up its route with no allocation.

use std::time::Duration;

use std::sync::Arc;

use http::{HeaderMap, Method};
use outrigger_api::{
    BackendRef, BulkheadSpec, CircuitBreaker, Fallback, Protocol, Retries, Timeouts,
    TrafficPolicySpec,
};

use super::breaker::{BreakerConfig, FailureRate};
use super::retry_on::RetryOn;
use crate::request_match::RequestMatcher;

/// Bodies up to this size are buffered so that they can be retried.
pub(crate) const MAX_RETRY_BODY: usize = 64 * 1024;

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RetryPolicy {
    /// Retries after the first try.
    pub attempts: u32,
    pub per_try_timeout: Option<Duration>,
    pub retry_on: RetryOn,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Retry POST and other non-idempotent methods too (route opt-in).
    pub non_idempotent: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BudgetPolicy {
    pub ratio: f64,
    pub min_per_second: u32,
    pub window: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BulkheadPolicy {
    pub max_concurrent: u32,
    pub max_pending: u32,
    pub queue_timeout: Duration,
}

/// What applies to one request.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RoutePolicy {
    /// The route's name in metrics (`route` label), when the policy gives one.
    pub name: Option<Box<str>>,
    pub request_timeout: Option<Duration>,
    pub retry: RetryPolicy,
    pub fallback: Option<Fallback>,
    /// Where its requests go by weight (`None`: the service itself).
    pub backends: Option<Arc<[WeightedBackend]>>,
}

/// One backend of a route: a service (`name.namespace`) and its relative weight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WeightedBackend {
    pub key: Box<str>,
    pub weight: u32,
}

/// Which route of a [`ServicePolicy`] a request matched (`None`: the service's own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RouteIndex(Option<usize>);

/// Everything about calling one service.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ServicePolicy {
    pub connect_timeout: Duration,
    pub idle_timeout: Option<Duration>,
    pub budget: BudgetPolicy,
    pub breaker: BreakerConfig,
    pub max_ejected_percent: u32,
    pub bulkhead: BulkheadPolicy,
    default_route: RoutePolicy,
    routes: Vec<(RequestMatcher, RoutePolicy)>,
}

impl ServicePolicy {
    /// The policy for a service in `namespace` (its backends are in the same one);
    /// `None` gives every default.
    pub(crate) fn resolve(
        spec: Option<&TrafficPolicySpec>,
        protocol: Protocol,
        namespace: &str,
        connect_default: Duration,
    ) -> Self {
        let grpc = protocol == Protocol::Grpc;
        let backends = |list: &[BackendRef]| -> Option<Arc<[WeightedBackend]>> {
            (!list.is_empty()).then(|| {
                list.iter()
                    .map(|b| WeightedBackend {
                        key: format!("{}.{namespace}", b.service).into_boxed_str(),
                        weight: b.weight,
                    })
                    .collect()
            })
        };
        let spec = spec.cloned().unwrap_or_default();
        let timeouts = spec.timeouts.clone().unwrap_or_default();
        let retries = spec.retries.clone().unwrap_or_default();
        let default_route = RoutePolicy {
            name: None,
            request_timeout: timeouts.request.map(|d| d.get()),
            retry: retry_policy(&retries, &Retries::default(), grpc),
            fallback: spec.fallback.clone(),
            backends: backends(&spec.backends),
        };
        let routes: Vec<(RequestMatcher, RoutePolicy)> = spec
            .routes
            .iter()
            .map(|route| {
                let timeouts = merge_timeouts(&timeouts, route.timeouts.as_ref());
                let policy = RoutePolicy {
                    name: route.name.as_deref().map(Box::from),
                    request_timeout: timeouts.request.map(|d| d.get()),
                    retry: retry_policy(route.retries.as_ref().unwrap_or(&retries), &retries, grpc),
                    fallback: route.fallback.clone().or_else(|| spec.fallback.clone()),
                    backends: match &route.backends {
                        Some(list) => backends(list),
                        None => default_route.backends.clone(),
                    },
                };
                (RequestMatcher::new(&route.matches), policy)
            })
            .collect();
        let budget = retries.budget.as_ref();
        ServicePolicy {
            connect_timeout: timeouts.connect.map(|d| d.get()).unwrap_or(connect_default),
            idle_timeout: timeouts.idle.map(|d| d.get()),
            budget: BudgetPolicy {
                ratio: budget.map(|b| b.ratio).unwrap_or(0.2),
                min_per_second: budget.map(|b| b.min_per_second).unwrap_or(10),
                window: budget
                    .map(|b| b.window.get())
                    .unwrap_or(Duration::from_secs(10)),
            },
            breaker: breaker_config(spec.circuit_breaker.as_ref()),
            max_ejected_percent: spec
                .circuit_breaker
                .as_ref()
                .and_then(|b| b.max_ejected_percent)
                .unwrap_or(50),
            bulkhead: bulkhead_policy(spec.bulkhead.as_ref()),
            default_route,
            routes,
        }
    }

    /// The first matching route, or the service's own: looked up once per request, and
    /// read again by index ([`Self::route_at`]) further down the stack.
    pub(crate) fn route(&self, method: &Method, path: &str, headers: &HeaderMap) -> RouteIndex {
        RouteIndex(
            self.routes
                .iter()
                .position(|(matcher, _)| matcher.matches_request(method, path, headers)),
        )
    }

    pub(crate) fn route_at(&self, index: RouteIndex) -> &RoutePolicy {
        match index.0.and_then(|i| self.routes.get(i)) {
            Some((_, policy)) => policy,
            None => &self.default_route,
        }
    }
}

fn merge_timeouts(base: &Timeouts, over: Option<&Timeouts>) -> Timeouts {
    let Some(over) = over else {
        return base.clone();
    };
    Timeouts {
        connect: over.connect.or(base.connect),
        request: over.request.or(base.request),
        idle: over.idle.or(base.idle),
    }
}

/// `retries` over `base` field by field, then DESIGN.md's defaults: one retry on
/// connect-failure, refused-stream and reset; backoff 25ms..250ms.
fn retry_policy(retries: &Retries, base: &Retries, grpc: bool) -> RetryPolicy {
    let retry_on = retries
        .retry_conditions()
        .or_else(|| base.retry_conditions());
    let backoff = retries.backoff.as_ref().or(base.backoff.as_ref());
    RetryPolicy {
        attempts: retries.attempts.or(base.attempts).unwrap_or(1),
        per_try_timeout: retries
            .per_try_timeout
            .or(base.per_try_timeout)
            .map(|d| d.get()),
        retry_on: retry_on
            .map(|conditions| RetryOn::new(&conditions))
            .unwrap_or_else(|| RetryOn::default_conditions(grpc)),
        backoff_base: backoff
            .map(|b| b.base.get())
            .unwrap_or(Duration::from_millis(25)),
        backoff_max: backoff
            .map(|b| b.max.get())
            .unwrap_or(Duration::from_millis(250)),
        non_idempotent: retries
            .non_idempotent
            .or(base.non_idempotent)
            .unwrap_or(false),
    }
}

fn breaker_config(spec: Option<&CircuitBreaker>) -> BreakerConfig {
    let defaults = BreakerConfig::default();
    let Some(spec) = spec else {
        return defaults;
    };
    BreakerConfig {
        // A policy that sets only a failure rate means only a failure rate.
        consecutive_failures: spec
            .consecutive_failures
            .or(if spec.failure_rate.is_some() {
                None
            } else {
                defaults.consecutive_failures
            }),
        failure_rate: spec.failure_rate.as_ref().map(|r| FailureRate {
            threshold: r.threshold,
            min_requests: r.min_requests,
            window: r.window.get(),
        }),
        base_ejection: spec
            .base_ejection
            .map(|d| d.get())
            .unwrap_or(defaults.base_ejection),
        max_ejection: spec
            .max_ejection
            .map(|d| d.get())
            .unwrap_or(defaults.max_ejection),
    }
}

fn bulkhead_policy(spec: Option<&BulkheadSpec>) -> BulkheadPolicy {
    let spec = spec.cloned().unwrap_or_default();
    BulkheadPolicy {
        max_concurrent: spec.max_concurrent_requests.unwrap_or(1024),
        max_pending: spec.max_pending_requests.unwrap_or(256),
        queue_timeout: spec
            .queue_timeout
            .map(|d| d.get())
            .unwrap_or(Duration::from_secs(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outrigger_api::{HumanDuration, RequestMatch, RouteSpec};

    fn ms(n: u64) -> Option<HumanDuration> {
        Some(HumanDuration(Duration::from_millis(n)))
    }

    #[test]
    fn absent_policy_gives_the_design_defaults() {
        let policy = ServicePolicy::resolve(None, Protocol::Http, "shop", Duration::from_secs(1));
        let route = policy.route_at(policy.route(&Method::GET, "/", &HeaderMap::new()));
        assert_eq!(route.request_timeout, None);
        assert_eq!(route.retry.attempts, 1);
        assert_eq!(route.retry.retry_on, RetryOn::default_conditions(false));
        assert_eq!(
            policy.budget,
            BudgetPolicy {
                ratio: 0.2,
                min_per_second: 10,
                window: Duration::from_secs(10)
            }
        );
        assert_eq!(policy.breaker, BreakerConfig::default());
        assert_eq!(policy.max_ejected_percent, 50);
        assert_eq!(policy.bulkhead.max_concurrent, 1024);
        assert_eq!(policy.bulkhead.max_pending, 256);
        assert_eq!(policy.connect_timeout, Duration::from_secs(1));
    }

    #[test]
    fn routes_override_field_by_field_first_match_wins() {
        let spec = TrafficPolicySpec {
            timeouts: Some(Timeouts {
                request: ms(2000),
                connect: ms(300),
                idle: None,
            }),
            retries: Some(Retries {
                attempts: Some(2),
                per_try_timeout: ms(500),
                retry_on: Some(vec!["5xx".into()]),
                ..Retries::default()
            }),
            routes: vec![
                RouteSpec {
                    name: Some("charge".into()),
                    matches: RequestMatch {
                        path_prefix: Some("/charge".into()),
                        methods: vec!["POST".into()],
                        ..RequestMatch::default()
                    },
                    retries: Some(Retries {
                        attempts: Some(0),
                        ..Retries::default()
                    }),
                    timeouts: Some(Timeouts {
                        request: ms(5000),
                        ..Timeouts::default()
                    }),
                    fallback: None,
                    backends: None,
                },
                RouteSpec {
                    name: None,
                    matches: RequestMatch {
                        path_prefix: Some("/charge".into()),
                        methods: vec![],
                        ..RequestMatch::default()
                    },
                    retries: None,
                    timeouts: Some(Timeouts {
                        request: ms(100),
                        ..Timeouts::default()
                    }),
                    fallback: None,
                    backends: None,
                },
            ],
            ..TrafficPolicySpec::default()
        };
        let policy =
            ServicePolicy::resolve(Some(&spec), Protocol::Http, "shop", Duration::from_secs(1));
        assert_eq!(policy.connect_timeout, Duration::from_millis(300));
        let post = policy.route_at(policy.route(&Method::POST, "/charge/now", &HeaderMap::new()));
        assert_eq!(post.retry.attempts, 0);
        assert_eq!(
            post.retry.per_try_timeout,
            Some(Duration::from_millis(500)),
            "inherited"
        );
        assert_eq!(post.request_timeout, Some(Duration::from_secs(5)));
        assert_eq!(post.name.as_deref(), Some("charge"));
        let get = policy.route_at(policy.route(&Method::GET, "/charge", &HeaderMap::new()));
        assert_eq!(
            get.request_timeout,
            Some(Duration::from_millis(100)),
            "second route"
        );
        assert_eq!(get.retry.attempts, 2, "no retries override: the policy's");
        let other = policy.route_at(policy.route(&Method::GET, "/other", &HeaderMap::new()));
        assert_eq!(other.request_timeout, Some(Duration::from_secs(2)));
    }

    #[test]
    fn a_failure_rate_alone_disables_the_consecutive_default() {
        let spec = TrafficPolicySpec {
            circuit_breaker: Some(CircuitBreaker {
                failure_rate: Some(outrigger_api::FailureRateSpec {
                    threshold: 0.5,
                    min_requests: 20,
                    window: HumanDuration(Duration::from_secs(10)),
                }),
                max_ejected_percent: Some(30),
                ..CircuitBreaker::default()
            }),
            ..TrafficPolicySpec::default()
        };
        let policy =
            ServicePolicy::resolve(Some(&spec), Protocol::Http, "shop", Duration::from_secs(1));
        assert_eq!(policy.breaker.consecutive_failures, None);
        assert!(policy.breaker.failure_rate.is_some());
        assert_eq!(policy.max_ejected_percent, 30);
    }
}
