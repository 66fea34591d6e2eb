//! Authorization on the inbound side, from the snapshot's InboundPolicy: which callers
//! (mTLS identities, or unauthenticated plaintext callers in permissive mode) may make
//! which requests. Compiled once per snapshot into a [`InboundPolicy`] that the inbound
//! side reads once per connection (the mTLS mode) and once per request (the rules).
//! The rate and concurrency limits of the same InboundPolicy ride along (`protect.rs`).
//!
//! Semantics (DESIGN.md): no policy, or no `authorization`, allows any identity of the
//! trust domain (the TLS verifier has already checked the domain). Otherwise the first
//! rule whose `from` matches the caller and whose `match` matches the request allows it,
//! and a request no rule allows gets `default`. Rules never match an unauthenticated
//! caller, so only `default: allow` lets plaintext callers in.

mod explain;
mod glob;

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::Method;
use outrigger_api::{AuthorizationDefault, MtlsMode, ServerPolicySpec};

use super::protect::Protection;
use crate::request_match::RequestMatcher;

use glob::IdGlob;

/// The InboundPolicy in force, replaced whole by each snapshot.
pub(crate) struct InboundPolicyCell(ArcSwap<InboundPolicy>);

impl Default for InboundPolicyCell {
    fn default() -> Self {
        InboundPolicyCell(ArcSwap::from_pointee(InboundPolicy::compile(None)))
    }
}

impl InboundPolicyCell {
    pub(crate) fn load(&self) -> arc_swap::Guard<Arc<InboundPolicy>> {
        self.0.load()
    }

    /// An owned handle, for holding across awaits (a guard should not be).
    pub(crate) fn load_full(&self) -> Arc<InboundPolicy> {
        self.0.load_full()
    }

    pub(crate) fn store(&self, policy: InboundPolicy) {
        tracing::info!(
            mtls = ?policy.mtls,
            rules = policy.authorization.as_ref().map_or(0, |a| a.rules.len()),
            default = ?policy.authorization.as_ref().map(|a| a.default),
            "server policy applied"
        );
        self.0.store(Arc::new(policy));
    }
}

/// A InboundPolicy compiled for checking requests.
pub(crate) struct InboundPolicy {
    /// What it was compiled from, to tell whether a snapshot changes it.
    spec: Option<ServerPolicySpec>,
    mtls: MtlsMode,
    /// `None`: any identity of the trust domain.
    authorization: Option<Rules>,
    /// Rate and concurrency limits; their state starts afresh when the policy changes.
    pub protection: Protection,
}

struct Rules {
    default: AuthorizationDefault,
    rules: Vec<Rule>,
}

struct Rule {
    from: Vec<IdGlob>,
    request: RequestMatcher,
    /// The rule has an HTTP `match`: it never matches an opaque TCP connection.
    http_only: bool,
}

impl Rule {
    fn matches_caller(&self, caller: &str) -> bool {
        self.from.iter().any(|glob| glob.matches(caller))
    }
}

impl InboundPolicy {
    pub(crate) fn compile(spec: Option<&ServerPolicySpec>) -> Self {
        let authorization = spec.and_then(|s| s.authorization.as_ref()).map(|a| Rules {
            default: a.default,
            rules: a
                .rules
                .iter()
                .map(|rule| Rule {
                    from: rule.from.iter().map(|g| IdGlob::new(g)).collect(),
                    request: rule
                        .matches
                        .as_ref()
                        .map(RequestMatcher::new)
                        .unwrap_or_default(),
                    http_only: rule.matches.is_some(),
                })
                .collect(),
        });
        InboundPolicy {
            spec: spec.cloned(),
            mtls: spec.map(|s| s.mtls).unwrap_or_default(),
            authorization,
            protection: Protection::compile(spec),
        }
    }

    pub(crate) fn spec(&self) -> Option<&ServerPolicySpec> {
        self.spec.as_ref()
    }

    /// Whether plaintext callers are accepted (as unauthenticated) besides mTLS ones.
    pub(crate) fn permissive(&self) -> bool {
        self.mtls == MtlsMode::Permissive
    }

    /// Whether `caller` (its SPIFFE id; `None` for a plaintext caller) may make this
    /// request. Allocation-free: it runs on every inbound request.
    pub(crate) fn allows(&self, caller: Option<&str>, method: &Method, path: &str) -> bool {
        let Some(authorization) = &self.authorization else {
            return caller.is_some();
        };
        if let Some(caller) = caller {
            let allowed = authorization
                .rules
                .iter()
                .any(|rule| rule.matches_caller(caller) && rule.request.matches(method, path));
            if allowed {
                return true;
            }
        }
        authorization.default == AuthorizationDefault::Allow
    }

    /// Whether `caller` may open an opaque TCP connection: as [`InboundPolicy::allows`],
    /// but a rule with an HTTP `match` never matches (there is no request to match).
    pub(crate) fn allows_tcp(&self, caller: Option<&str>) -> bool {
        let Some(authorization) = &self.authorization else {
            return caller.is_some();
        };
        let by_rule = caller.is_some_and(|caller| {
            authorization
                .rules
                .iter()
                .any(|rule| !rule.http_only && rule.matches_caller(caller))
        });
        by_rule || authorization.default == AuthorizationDefault::Allow
    }

    /// Why [`InboundPolicy::allows_tcp`] refused, for the log.
    pub(crate) fn explain_tcp_denial(&self, caller: Option<&str>) -> String {
        explain::tcp_denial(self, caller)
    }

    /// Why a request [`InboundPolicy::allows`] refused was refused, for the log: the rule
    /// that came closest, or that none matched the caller. Only called on a denial.
    pub(crate) fn explain_denial(
        &self,
        caller: Option<&str>,
        method: &Method,
        path: &str,
    ) -> String {
        explain::denial(self, caller, method, path)
    }
}

#[cfg(test)]
mod tests;
