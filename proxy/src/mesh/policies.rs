//! TrafficPolicies as the mesh table keeps them: compact JSON without `targetRef` (the
//! entry that holds it already says which service it is for), and interned, so that the
//! services that share a policy (the common case: teams apply a few standard ones) share
//! one copy of it. An entry's policy is then a reference, not a copy.

use std::collections::HashSet;
use std::sync::Arc;

use outrigger_api::TrafficPolicySpec;
use serde_json::value::RawValue;

/// The policies held by the table's entries, each once.
#[derive(Debug, Default)]
pub(crate) struct PolicyInterner {
    held: HashSet<Arc<str>>,
}

impl PolicyInterner {
    /// The shared text of the policy `raw` (as sent); an error if it is not a
    /// TrafficPolicy.
    pub(crate) fn intern(&mut self, raw: &RawValue) -> Result<Arc<str>, serde_json::Error> {
        let mut spec: TrafficPolicySpec = serde_json::from_str(raw.get())?;
        spec.target_ref = Default::default();
        let text = serde_json::to_string(&spec)?;
        if let Some(held) = self.held.get(text.as_str()) {
            return Ok(held.clone());
        }
        let text: Arc<str> = text.into();
        self.held.insert(text.clone());
        Ok(text)
    }

    /// Forgets the policies no entry refers to any more.
    pub(crate) fn forget_unused(&mut self) {
        self.held.retain(|text| Arc::strong_count(text) > 1);
    }

    pub(crate) fn len(&self) -> usize {
        self.held.len()
    }
}

/// The spec of an interned policy text.
pub(super) fn parse(text: &str) -> Result<TrafficPolicySpec, serde_json::Error> {
    serde_json::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_string()).unwrap()
    }

    #[test]
    fn policies_that_differ_only_by_target_share_one_copy() {
        let mut interner = PolicyInterner::default();
        let a = interner
            .intern(&raw(
                r#"{"targetRef":{"kind":"MeshService","name":"a"},"retries":{"attempts":2}}"#,
            ))
            .unwrap();
        let b = interner
            .intern(&raw(
                r#"{"targetRef":{"kind":"MeshService","name":"b"},"retries":{"attempts":2}}"#,
            ))
            .unwrap();
        let c = interner
            .intern(&raw(
                r#"{"targetRef":{"kind":"MeshService","name":"c"},"retries":{"attempts":3}}"#,
            ))
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(interner.len(), 2);
        assert_eq!(parse(&a).unwrap().retries.unwrap().attempts, Some(2));
        drop((a, b));
        interner.forget_unused();
        assert_eq!(interner.len(), 1, "only c's is still referred to");
    }

    #[test]
    fn what_is_not_a_traffic_policy_is_an_error() {
        let mut interner = PolicyInterner::default();
        assert!(interner.intern(&raw(r#"{"retries":"often"}"#)).is_err());
    }
}
