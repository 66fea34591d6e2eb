use std::time::Duration;

use super::*;
use crate::resource::TargetRef;
use crate::server_policy::{Authorization, AuthorizationRule, Concurrency, RateLimit};
use crate::traffic_policy::{
    BackoffSpec, CircuitBreaker, FailureRateSpec, RetryBudgetSpec, RouteSpec,
};

const TD: &str = "cluster.local";

fn target() -> TargetRef {
    TargetRef {
        kind: "MeshService".into(),
        name: "payments".into(),
    }
}

fn ms(n: u64) -> HumanDuration {
    HumanDuration(Duration::from_millis(n))
}

fn paths(errors: &[FieldError]) -> Vec<&str> {
    errors.iter().map(|e| e.path.as_str()).collect()
}

#[test]
fn globs() {
    for good in [
        "spiffe://cluster.local/ns/shop/sa/orders",
        "spiffe://cluster.local/ns/ops/sa/*",
        "spiffe://cluster.local/ns/*/sa/*",
        "spiffe://cluster.local/ns/shop/sa/pay*",
        "spiffe://cluster.local/ns/team-*/sa/api",
    ] {
        assert_eq!(check_identity_glob(good, TD), Ok(()), "{good}");
    }
    for bad in [
        "orders",
        "spiffe://cluster.local",
        "spiffe://cluster.local/ns/shop",
        "spiffe://cluster.local/ns/shop/sa/",
        "spiffe://cluster.local/ns/shop/sa/a/b",
        "spiffe://cluster.local/ns/**/sa/x",
        "spiffe://cluster.local/ns/*x/sa/x",
        "spiffe://cluster.local/ns/a*b/sa/x",
        "spiffe://cluster.local/*",
        "spiffe://cluster.local/ns/../sa/x",
        "spiffe://cluster.local/ns/a b/sa/x",
        "spiffe://cluster.local/x/a/sa/b",
    ] {
        let err = check_identity_glob(bad, TD).unwrap_err();
        assert!(err.contains("invalid identity glob"), "{bad}: {err}");
    }
    let err = check_identity_glob("spiffe://other.org/ns/a/sa/b", TD).unwrap_err();
    assert!(
        err.contains("not in the trust domain cluster.local"),
        "{err}"
    );
    let err = check_identity_glob("spiffe://*/ns/a/sa/b", TD).unwrap_err();
    assert!(err.contains("trust domain cannot hold '*'"), "{err}");
}

#[test]
fn methods() {
    assert!(is_http_method("GET") && is_http_method("PATCH"));
    assert!(!is_http_method("get") && !is_http_method("FETCH") && !is_http_method(""));
}

#[test]
fn a_full_valid_traffic_policy_has_no_problems() {
    let spec = TrafficPolicySpec {
        target_ref: target(),
        timeouts: Some(Timeouts {
            connect: Some(ms(1000)),
            request: Some(ms(2000)),
            idle: None,
        }),
        retries: Some(Retries {
            non_idempotent: None,
            attempts: Some(2),
            per_try_timeout: Some(ms(500)),
            retry_on: Some(vec!["5xx".into(), "503".into()]),
            backoff: Some(BackoffSpec {
                base: ms(25),
                max: ms(25),
            }),
            budget: Some(RetryBudgetSpec {
                ratio: 1.0,
                min_per_second: 0,
                window: ms(10_000),
            }),
        }),
        fallback: Some(Fallback {
            status: 200,
            body: String::new(),
            headers: [("content-type".to_string(), "application/json".to_string())].into(),
        }),
        ..Default::default()
    };
    assert_eq!(spec.validate(), vec![]);
}

#[test]
fn traffic_policy_problems_have_paths() {
    let bad_retries = Retries {
        non_idempotent: None,
        attempts: Some(1),
        per_try_timeout: Some(ms(0)),
        retry_on: Some(vec!["reset".into(), "sometimes".into()]),
        backoff: Some(BackoffSpec {
            base: ms(300),
            max: ms(250),
        }),
        budget: Some(RetryBudgetSpec {
            ratio: 1.5,
            min_per_second: 10,
            window: ms(10_000),
        }),
    };
    let spec = TrafficPolicySpec {
        target_ref: TargetRef {
            kind: "Service".into(),
            name: "payments".into(),
        },
        retries: Some(bad_retries.clone()),
        circuit_breaker: Some(CircuitBreaker {
            failure_rate: Some(FailureRateSpec {
                threshold: -0.1,
                min_requests: 1,
                window: ms(1000),
            }),
            base_ejection: Some(ms(60_000)),
            max_ejection: Some(ms(30_000)),
            max_ejected_percent: Some(101),
            ..Default::default()
        }),
        fallback: Some(Fallback {
            status: 700,
            body: String::new(),
            headers: [("bad header".to_string(), "x".to_string())].into(),
        }),
        routes: vec![
            RouteSpec {
                name: Some("Charge".into()),
                matches: RequestMatch {
                    path_prefix: Some("charge".into()),
                    methods: vec!["POST".into(), "post".into()],
                    headers: [("bad header".to_string(), "x".to_string())].into(),
                },
                retries: Some(bad_retries),
                ..Default::default()
            },
            RouteSpec {
                name: Some("refunds".into()),
                ..Default::default()
            },
            RouteSpec {
                name: Some("refunds".into()),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let errors = spec.validate();
    assert_eq!(
        paths(&errors),
        [
            "spec.targetRef.kind",
            "spec.retries.perTryTimeout",
            "spec.retries.retryOn[1]",
            "spec.retries.backoff.base",
            "spec.retries.budget.ratio",
            "spec.circuitBreaker.failureRate.threshold",
            "spec.circuitBreaker.baseEjection",
            "spec.circuitBreaker.maxEjectedPercent",
            "spec.fallback.status",
            "spec.fallback.headers.bad header",
            "spec.routes[0].name",
            "spec.routes[0].match.pathPrefix",
            "spec.routes[0].match.methods[1]",
            "spec.routes[0].match.headers.bad header",
            "spec.routes[0].retries.perTryTimeout",
            "spec.routes[0].retries.retryOn[1]",
            "spec.routes[0].retries.backoff.base",
            "spec.routes[0].retries.budget.ratio",
            "spec.routes[2].name",
        ]
    );
    let message = |path: &str| {
        errors
            .iter()
            .find(|e| e.path == path)
            .unwrap()
            .message
            .clone()
    };
    assert_eq!(
        message("spec.retries.backoff.base"),
        "300ms is more than max 250ms"
    );
    assert_eq!(
        message("spec.circuitBreaker.baseEjection"),
        "1m is more than maxEjection 30s"
    );
    assert_eq!(
        message("spec.circuitBreaker.maxEjectedPercent"),
        "101 is more than 100"
    );
    assert!(message("spec.retries.retryOn[1]").contains("\"sometimes\""));
    assert!(message("spec.fallback.status").contains("100 to 599"));
}

#[test]
fn server_policy_problems_have_paths() {
    let spec = ServerPolicySpec {
        target_ref: target(),
        authorization: Some(Authorization {
            rules: vec![
                AuthorizationRule {
                    from: vec![
                        "spiffe://cluster.local/ns/ops/sa/*".into(),
                        "spiffe://cluster.local/ns/ops".into(),
                    ],
                    matches: Some(RequestMatch {
                        path_prefix: Some("/".into()),
                        methods: vec!["GET".into(), "FETCH".into()],
                        headers: [("x-user".to_string(), "admin".to_string())].into(),
                    }),
                },
                AuthorizationRule {
                    from: vec![],
                    matches: None,
                },
            ],
            ..Default::default()
        }),
        rate_limit: Some(RateLimit {
            requests_per_second: 0,
            burst: Some(0),
        }),
        concurrency: Some(Concurrency {
            max: Some(10),
            adaptive: Some(true),
        }),
        ..Default::default()
    };
    assert_eq!(
        paths(&spec.validate(TD)),
        [
            "spec.authorization.rules[0].from[1]",
            "spec.authorization.rules[0].match.methods[1]",
            "spec.authorization.rules[0].match.headers",
            "spec.authorization.rules[1].from",
            "spec.rateLimit.requestsPerSecond",
            "spec.rateLimit.burst",
            "spec.concurrency",
        ]
    );

    let neither = ServerPolicySpec {
        target_ref: target(),
        concurrency: Some(Concurrency {
            max: None,
            adaptive: Some(false),
        }),
        ..Default::default()
    };
    let errors = neither.validate(TD);
    assert_eq!(paths(&errors), ["spec.concurrency"]);
    assert!(errors[0].message.contains("either max"), "{errors:?}");

    for ok in [
        Concurrency {
            max: Some(256),
            adaptive: None,
        },
        Concurrency {
            max: Some(256),
            adaptive: Some(false),
        },
        Concurrency {
            max: None,
            adaptive: Some(true),
        },
    ] {
        let spec = ServerPolicySpec {
            target_ref: target(),
            concurrency: Some(ok),
            ..Default::default()
        };
        assert_eq!(spec.validate(TD), vec![]);
    }
}
