//! The cluster's documents through the policy loader, keeping what is valid. A
//! directory of files is all or nothing (its author fixes the file and saves again);
//! a cluster is written by many teams at once, and one broken TrafficPolicy must not
//! freeze everyone's endpoints. So a resource with an error is left out, with its
//! error reported, and the rest is served; leaving one out can orphan another (a
//! policy whose MeshService was left out), so this repeats until nothing else fails.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::policy::{self, FileCache, Policy, PolicyError};

use super::documents::Document;

/// The valid part of `documents`, the names of the documents in it, and every error
/// found on the way (each naming its resource: `TrafficPolicy shop/payments: ...`).
pub(crate) fn admit(
    mut documents: Vec<Document>,
    trust_domain: &str,
    cache: &mut FileCache,
) -> (Policy, Vec<PathBuf>, Vec<PolicyError>) {
    let mut errors: Vec<PolicyError> = Vec::new();
    loop {
        match policy::check_documents(&documents, trust_domain, cache) {
            Ok(policy) => {
                let names = documents.into_iter().map(|(name, _)| name).collect();
                return (policy, names, errors);
            }
            Err(found) => {
                let broken: BTreeSet<PathBuf> = found.0.iter().map(|e| e.file.clone()).collect();
                for mut error in found.0 {
                    // The line of a rendered document means nothing to its author.
                    error.line = None;
                    if !errors.contains(&error) {
                        errors.push(error);
                    }
                }
                let before = documents.len();
                documents.retain(|(name, _)| !broken.contains(name));
                // Every error names a document, so each round drops at least one; this
                // guard only keeps a future error without one from looping forever.
                if documents.len() == before {
                    return (Policy::default(), Vec::new(), errors);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(name: &str, text: &str) -> Document {
        (PathBuf::from(name), text.to_string())
    }

    const SERVICE: &str = r#"{"apiVersion": "outrigger.dev/v1alpha1", "kind": "MeshService",
        "metadata": {"name": "payments", "namespace": "shop"},
        "spec": {"identity": "spiffe://cluster.local/ns/shop/sa/payments"}}"#;

    #[test]
    fn a_broken_resource_and_what_depends_on_it_are_left_out_and_reported() {
        let bad_service = SERVICE
            .replace("\"payments\", \"namespace", "\"inventory\", \"namespace")
            .replace("sa/payments\"", "sa/inventory\", \"bogus\": \"x\"");
        let orphan = r#"{"apiVersion": "outrigger.dev/v1alpha1", "kind": "TrafficPolicy",
            "metadata": {"name": "inventory", "namespace": "shop"},
            "spec": {"targetRef": {"kind": "MeshService", "name": "inventory"}}}"#;
        let docs = vec![
            doc("MeshService shop/payments", SERVICE),
            doc("MeshService shop/inventory", &bad_service),
            doc("TrafficPolicy shop/inventory", orphan),
        ];
        let (policy, names, errors) = admit(docs, "cluster.local", &mut FileCache::default());
        assert_eq!(policy.services.len(), 1);
        assert_eq!(policy.services[0].name, "payments");
        assert_eq!(names, [PathBuf::from("MeshService shop/payments")]);
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with("MeshService shop/inventory: spec.bogus: unknown field `bogus`"),
            "{lines:?}"
        );
        // The orphan is not served either, and says why.
        assert!(
            lines[1]
                .starts_with("TrafficPolicy shop/inventory: spec.targetRef.name: no MeshService"),
            "{lines:?}"
        );
    }
}
