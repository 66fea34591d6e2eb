use http::Method;
use outrigger_api::{
    Authorization, AuthorizationDefault, AuthorizationRule, MtlsMode, RequestMatch,
    ServerPolicySpec,
};

use super::InboundPolicy;

const ORDERS: &str = "spiffe://cluster.local/ns/shop/sa/orders";
const MONITOR: &str = "spiffe://cluster.local/ns/ops/sa/monitor";
const EVIL: &str = "spiffe://cluster.local/ns/shop/sa/evil";

fn rule(from: &[&str], prefix: Option<&str>, methods: &[&str]) -> AuthorizationRule {
    let matches = (prefix.is_some() || !methods.is_empty()).then(|| RequestMatch {
        path_prefix: prefix.map(str::to_string),
        methods: methods.iter().map(|m| m.to_string()).collect(),
        ..RequestMatch::default()
    });
    AuthorizationRule {
        from: from.iter().map(|f| f.to_string()).collect(),
        matches,
    }
}

fn policy(
    mtls: MtlsMode,
    default: AuthorizationDefault,
    rules: Vec<AuthorizationRule>,
) -> InboundPolicy {
    InboundPolicy::compile(Some(&ServerPolicySpec {
        mtls,
        authorization: Some(Authorization { default, rules }),
        ..ServerPolicySpec::default()
    }))
}

fn shop_policy() -> InboundPolicy {
    policy(
        MtlsMode::Strict,
        AuthorizationDefault::Deny,
        vec![
            rule(&[ORDERS], Some("/orders"), &["GET", "POST"]),
            rule(&["spiffe://cluster.local/ns/ops/sa/*"], None, &["GET"]),
        ],
    )
}

#[test]
fn no_policy_allows_any_authenticated_caller_only() {
    for policy in [
        InboundPolicy::compile(None),
        InboundPolicy::compile(Some(&ServerPolicySpec {
            mtls: MtlsMode::Permissive,
            ..ServerPolicySpec::default()
        })),
    ] {
        assert!(policy.allows(Some(EVIL), &Method::DELETE, "/x"));
        assert!(!policy.allows(None, &Method::GET, "/"));
        assert!(
            policy
                .explain_denial(None, &Method::GET, "/")
                .contains("unauthenticated")
        );
    }
    assert!(!InboundPolicy::compile(None).permissive());
}

#[test]
fn the_first_matching_rule_allows() {
    let policy = shop_policy();
    assert!(policy.allows(Some(ORDERS), &Method::GET, "/orders/1"));
    assert!(policy.allows(Some(ORDERS), &Method::POST, "/orders"));
    assert!(!policy.allows(Some(ORDERS), &Method::DELETE, "/orders/1"));
    assert!(!policy.allows(Some(ORDERS), &Method::GET, "/admin"));
    assert!(policy.allows(Some(MONITOR), &Method::GET, "/admin"));
    assert!(!policy.allows(Some(MONITOR), &Method::POST, "/orders"));
    assert!(!policy.allows(Some(EVIL), &Method::GET, "/orders"));
    assert!(!policy.allows(None, &Method::GET, "/orders"));
}

#[test]
fn default_allow_lets_everyone_in_even_plaintext() {
    let policy = policy(
        MtlsMode::Permissive,
        AuthorizationDefault::Allow,
        vec![rule(&[ORDERS], Some("/orders"), &[])],
    );
    assert!(policy.permissive());
    assert!(policy.allows(Some(EVIL), &Method::GET, "/admin"));
    assert!(policy.allows(None, &Method::GET, "/admin"));
}

#[test]
fn denials_name_the_closest_rule() {
    let policy = shop_policy();
    let why = policy.explain_denial(Some(ORDERS), &Method::DELETE, "/orders/1");
    assert!(
        why.contains("authorization.rules[0]") && why.contains("method (methods GET, POST)"),
        "{why}"
    );
    let why = policy.explain_denial(Some(ORDERS), &Method::GET, "/admin");
    assert!(why.contains("path (pathPrefix /orders)"), "{why}");
    let why = policy.explain_denial(Some(MONITOR), &Method::POST, "/x");
    assert!(why.contains("authorization.rules[1]"), "{why}");
    let why = policy.explain_denial(Some(EVIL), &Method::GET, "/orders");
    assert!(why.contains("no rule's `from` matches the caller"), "{why}");
    let why = policy.explain_denial(None, &Method::GET, "/orders");
    assert!(why.contains("unauthenticated"), "{why}");
}

#[test]
fn the_spec_is_kept_to_detect_changes() {
    let spec = ServerPolicySpec {
        mtls: MtlsMode::Permissive,
        ..ServerPolicySpec::default()
    };
    assert_eq!(InboundPolicy::compile(Some(&spec)).spec(), Some(&spec));
    assert_eq!(InboundPolicy::compile(None).spec(), None);
}

#[test]
fn tcp_is_allowed_by_rules_without_an_http_match_only() {
    let p = policy(
        MtlsMode::Strict,
        AuthorizationDefault::Deny,
        vec![
            rule(&[MONITOR], Some("/metrics"), &[]),
            rule(&["spiffe://cluster.local/ns/shop/sa/*"], None, &[]),
        ],
    );
    assert!(p.allows_tcp(Some(ORDERS)));
    assert!(!p.allows_tcp(Some(MONITOR)), "its rule matches HTTP only");
    assert!(!p.allows_tcp(None));
    let why = p.explain_tcp_denial(Some(MONITOR));
    assert!(
        why.contains("authorization.rules[0]") && why.contains("HTTP"),
        "{why}"
    );
    let none = InboundPolicy::compile(None);
    assert!(none.allows_tcp(Some(EVIL)) && !none.allows_tcp(None));
}
