//! Words for a denial: which rule came closest to allowing the request and what it
//! lacked, so that whoever reads the proxy's log can fix the policy or the caller. Runs
//! only when a request is refused.

use http::Method;

use super::{InboundPolicy, Rule};

pub(super) fn denial(
    policy: &InboundPolicy,
    caller: Option<&str>,
    method: &Method,
    path: &str,
) -> String {
    let Some(authorization) = &policy.authorization else {
        return "unauthenticated (plaintext) caller, and no authorization rules: only \
                mTLS callers of the trust domain are allowed (set authorization.default: \
                allow to admit plaintext callers)"
            .to_string();
    };
    let Some(caller) = caller else {
        return "unauthenticated (plaintext) caller: rules only match mTLS identities, and \
                authorization.default is deny"
            .to_string();
    };
    if authorization.rules.is_empty() {
        return "no rules, and authorization.default is deny".to_string();
    }
    // The closest rule: one that names the caller, then the one that matches more of the
    // request; the earlier one on a tie.
    let mut closest: Option<((bool, u8), &Rule, usize)> = None;
    for (i, rule) in authorization.rules.iter().enumerate() {
        let matched = u8::from(rule.request.matches_path(path))
            + u8::from(rule.request.matches_method(method));
        let score = (rule.matches_caller(caller), matched);
        if closest.is_none_or(|(best, _, _)| score > best) {
            closest = Some((score, rule, i));
        }
    }
    let Some(((true, _), rule, i)) = closest else {
        return "no rule's `from` matches the caller, and authorization.default is deny"
            .to_string();
    };
    let mut lacks = Vec::new();
    if !rule.request.matches_path(path) {
        lacks.push(format!("path (pathPrefix {})", rule.request.path_prefix()));
    }
    if !rule.request.matches_method(method) {
        lacks.push(format!(
            "method (methods {})",
            rule.request.methods().join(", ")
        ));
    }
    format!(
        "closest rule authorization.rules[{i}] matches the caller but not the {}, and \
         authorization.default is deny",
        lacks.join(" nor the ")
    )
}

/// Words for a refused opaque TCP connection: the rule that names the caller but only
/// HTTP requests, or that no rule names it.
pub(super) fn tcp_denial(policy: &InboundPolicy, caller: Option<&str>) -> String {
    let (Some(authorization), Some(caller)) = (&policy.authorization, caller) else {
        // The request wording covers the plaintext cases; the method and path are unused.
        return denial(policy, caller, &Method::GET, "/");
    };
    let http_only = authorization
        .rules
        .iter()
        .position(|rule| rule.http_only && rule.matches_caller(caller));
    match http_only {
        Some(i) => format!(
            "authorization.rules[{i}] matches the caller but has an HTTP `match`, which \
             never matches opaque TCP, and authorization.default is deny"
        ),
        None => {
            "no rule's `from` matches the caller, and authorization.default is deny".to_string()
        }
    }
}
