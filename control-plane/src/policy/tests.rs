//! Loading policy files: what is accepted, and that every error names file:line: field.

use std::path::Path;

use outrigger_api::{LoadBalancer, MtlsMode, Protocol};

use super::*;

pub(super) const PAYMENTS: &str = "\
apiVersion: outrigger.dev/v1alpha1
kind: MeshService
metadata: {name: payments, namespace: shop}
spec:
  identity: spiffe://cluster.local/ns/shop/sa/payments
  protocol: http
  endpoints:
    - address: 127.0.0.1:14143
";

/// DESIGN.md's example, all three kinds, with the header on each document.
pub(super) const DESIGN_EXAMPLE: &str = include_str!("../../../tests/fixtures/design-example.yaml");
pub(super) fn load(text: &str) -> Result<Policy, PolicyErrors> {
    let mut loader = Loader::new("cluster.local");
    loader.add_file(Path::new("policy/shop.yaml"), text);
    loader.finish()
}

/// The error lines for `text`, which must be refused.
pub(super) fn errors(text: &str) -> Vec<String> {
    load(text).unwrap_err().lines()
}

/// The one error line for `text`.
pub(super) fn error(text: &str) -> String {
    let lines = errors(text);
    assert_eq!(lines.len(), 1, "one error: {lines:#?}");
    lines.into_iter().next().unwrap()
}

#[test]
fn loads_a_mesh_service() {
    let policy = load(PAYMENTS).unwrap();
    assert_eq!(policy.services.len(), 1);
    let svc = &policy.services[0];
    assert_eq!(
        (svc.namespace.as_str(), svc.name.as_str()),
        ("shop", "payments")
    );
    assert_eq!(svc.identity, "spiffe://cluster.local/ns/shop/sa/payments");
    assert_eq!(svc.protocol, Protocol::Http);
    assert_eq!(svc.endpoints[0].address, "127.0.0.1:14143");
    assert!(svc.traffic_policy.is_none());
    assert!(policy.server_policies.is_empty());
}

#[test]
fn the_design_example_is_valid_and_attached() {
    let policy = load(DESIGN_EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(policy.services.len(), 1);
    let traffic = policy.services[0].traffic_policy.as_ref().unwrap();
    assert_eq!(traffic.load_balancer, Some(LoadBalancer::PeakEwma));
    let retries = traffic.retries.as_ref().unwrap();
    assert_eq!(retries.attempts, Some(2));
    assert_eq!(
        retries.backoff.as_ref().unwrap().max.get(),
        std::time::Duration::from_millis(250)
    );
    assert_eq!(
        traffic.routes[0].retries.as_ref().unwrap().attempts,
        Some(0)
    );
    let fallback = traffic.fallback.as_ref().unwrap();
    assert_eq!(fallback.body, r#"{"degraded":true}"#);
    assert_eq!(fallback.headers["content-type"], "application/json");

    let server = &policy.server_policies[&ServiceKey::new("shop", "payments")];
    assert_eq!(server.mtls, MtlsMode::Strict);
    let rules = &server.authorization.as_ref().unwrap().rules;
    assert_eq!(rules[0].from[1], "spiffe://cluster.local/ns/ops/sa/*");
    assert_eq!(server.concurrency.as_ref().unwrap().max, Some(256));
}

#[test]
fn empty_documents_are_skipped() {
    let text = format!("# comment only\n---\n{PAYMENTS}---\n\n# nothing\n---\n");
    assert_eq!(load(&text).unwrap().services.len(), 1);
}

#[test]
fn bad_endpoint_names_the_file_line_and_field() {
    let text = PAYMENTS.replace("127.0.0.1:14143", "x");
    assert_eq!(
        error(&text),
        "policy/shop.yaml:8: spec.endpoints[0].address: invalid address \"x\" (expected ip:port)"
    );
}

#[test]
fn lines_count_from_the_file_not_the_document() {
    // The second document starts on line 10; its endpoint is on line 17.
    let second = PAYMENTS
        .replace("payments", "billing")
        .replace("127.0.0.1:14143", "nope");
    let text = format!("{PAYMENTS}---\n{second}");
    let err = error(&text);
    assert!(
        err.starts_with("policy/shop.yaml:17: spec.endpoints[0].address: "),
        "{err}"
    );
}

#[test]
fn unknown_field_is_an_error_at_its_line() {
    let text = format!(
        "{PAYMENTS}---\n{}",
        PAYMENTS.replace("  protocol: http", "  protocl: http")
    );
    let err = error(&text);
    assert!(err.starts_with("policy/shop.yaml:15: spec"), "{err}");
    assert!(err.contains("protocl"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
}

#[test]
fn bad_duration_names_its_field_path() {
    let text = DESIGN_EXAMPLE.replace("base: 25ms", "base: 25");
    assert_eq!(
        error(&text),
        "policy/shop.yaml:21: spec.retries.backoff.base: invalid duration \"25\" \
         (expected a number and a unit: ms, s, m, h; e.g. 250ms, 2s, 1m)"
    );
}

#[test]
fn yaml_syntax_error_has_a_line() {
    let err = error("apiVersion: outrigger.dev/v1alpha1\nkind: MeshService\nmetadata: {name: [\n");
    assert!(err.starts_with("policy/shop.yaml:"), "{err}");
    assert!(!err.starts_with("policy/shop.yaml:0:"), "{err}");
}

#[test]
fn header_errors() {
    let err = error(&PAYMENTS.replace("outrigger.dev/v1alpha1", "outrigger.dev/v2"));
    assert!(
        err.starts_with("policy/shop.yaml:1: apiVersion: \"outrigger.dev/v2\""),
        "{err}"
    );
    let err = error(&PAYMENTS.replace("kind: MeshService", "kind: Gateway"));
    assert!(
        err.starts_with("policy/shop.yaml:2: kind: unknown kind \"Gateway\""),
        "{err}"
    );
    let err = error("\n# x\nkind: MeshService\n");
    assert!(
        err.starts_with("policy/shop.yaml:3: apiVersion: missing"),
        "{err}"
    );
}

#[test]
fn identity_must_be_of_the_trust_domain() {
    let err = error(&PAYMENTS.replace("spiffe://cluster.local/", "spiffe://other.org/"));
    assert!(
        err.starts_with("policy/shop.yaml:5: spec.identity: "),
        "{err}"
    );
    assert!(err.contains("trust domain cluster.local"), "{err}");
    let err = error(&PAYMENTS.replace("spiffe://cluster.local/ns/shop/sa/payments", "payments"));
    assert!(
        err.starts_with("policy/shop.yaml:5: spec.identity: "),
        "{err}"
    );
}

#[test]
fn names_are_dns_labels() {
    let err = error(&PAYMENTS.replace("name: payments", "name: Pay_ments"));
    assert!(
        err.starts_with("policy/shop.yaml:3: metadata.name: "),
        "{err}"
    );
}

#[test]
fn duplicate_service_names_both_places() {
    let err = error(&format!("{PAYMENTS}---\n{PAYMENTS}"));
    assert_eq!(
        err,
        "policy/shop.yaml:12: metadata.name: MeshService shop/payments is already defined at policy/shop.yaml:1"
    );
}

#[test]
fn load_dir_reads_yaml_recursively_and_skips_hidden_and_other_files() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("shop/.hidden")).unwrap();
    fs::write(dir.path().join("shop/payments.yml"), PAYMENTS).unwrap();
    fs::write(
        dir.path().join("orders.yaml"),
        PAYMENTS.replace("payments", "orders"),
    )
    .unwrap();
    fs::write(dir.path().join("shop/.hidden/dup.yaml"), PAYMENTS).unwrap();
    fs::write(dir.path().join("README.md"), "not yaml: [").unwrap();
    let policy = load_dir(dir.path(), "cluster.local").unwrap();
    let names: Vec<&str> = policy.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["orders", "payments"]);

    let missing = dir.path().join("missing");
    let err = load_dir(&missing, "cluster.local").unwrap_err().to_string();
    assert!(err.starts_with(missing.to_str().unwrap()), "{err}");
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn policies_attach_to_their_target_in_their_namespace() {
    let other_ns = DESIGN_EXAMPLE.replace("namespace: shop", "namespace: ops");
    let text = format!("{DESIGN_EXAMPLE}---\n{other_ns}");
    let text = text.replace(
        "spiffe://cluster.local/ns/shop/sa/orders",
        "spiffe://cluster.local/ns/ops/sa/orders",
    );
    let policy = load(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(policy.services.len(), 2);
    assert!(policy.services.iter().all(|s| s.traffic_policy.is_some()));
    assert_eq!(policy.server_policies.len(), 2);
    assert!(
        policy
            .service(&ServiceKey::new("ops", "payments"))
            .is_some()
    );
}

#[test]
fn a_backend_must_be_a_mesh_service_of_the_namespace() {
    let policy = format!(
        "{PAYMENTS}---
apiVersion: outrigger.dev/v1alpha1
kind: TrafficPolicy
metadata: {{name: payments, namespace: shop}}
spec:
  targetRef: {{kind: MeshService, name: payments}}
  backends:
    - {{service: payments, weight: 90}}
    - {{service: payments-v3, weight: 10}}
  routes:
    - match: {{pathPrefix: /legacy}}
      backends: [{{service: monolith, weight: 100}}]
"
    );
    let errors = errors(&policy);
    assert_eq!(
        errors,
        [
            "policy/shop.yaml:17: spec.backends[1].service: no MeshService named \"payments-v3\" in namespace shop",
            "policy/shop.yaml:20: spec.routes[0].backends[0].service: no MeshService named \"monolith\" in namespace shop",
        ]
    );
    let weightless = policy
        .replace(
            "{service: payments, weight: 90}",
            "{service: payments, weight: 0}",
        )
        .replace(
            "{service: payments-v3, weight: 10}",
            "{service: payments, weight: 0}",
        );
    assert!(
        errors_of(&weightless)
            .iter()
            .any(|e| e.contains("spec.backends: every weight is 0")),
        "{:?}",
        errors_of(&weightless)
    );
}

fn errors_of(text: &str) -> Vec<String> {
    load(text).err().map(|e| e.lines()).unwrap_or_default()
}

/// The CRD form: what `kubectl get -o yaml` shows (labels, annotations, a status the
/// cluster wrote) loads as the file form; the status is ignored.
#[test]
fn crd_form_with_labels_and_status_loads() {
    let text = "\
apiVersion: outrigger.dev/v1alpha1
kind: MeshService
metadata:
  name: payments
  namespace: shop
  labels: {app.kubernetes.io/part-of: shop}
  annotations: {note: reviewed}
spec:
  identity: spiffe://cluster.local/ns/shop/sa/payments
status:
  version: 12
  proxiesConverged: 2
  proxies: 3
  converged: 2/3
  endpoints: 2
---
apiVersion: outrigger.dev/v1alpha1
kind: ServerPolicy
metadata: {name: payments, namespace: shop}
spec:
  targetRef: {kind: MeshService, name: payments}
status: {converged: 0/0, anything: [1, 2]}
";
    let policy = load(text).unwrap();
    assert_eq!(policy.services.len(), 1);
    assert_eq!(policy.server_policies.len(), 1);
}

#[test]
fn metadata_the_api_server_writes_is_still_refused() {
    let text = PAYMENTS.replace("namespace: shop}", "namespace: shop, uid: abc}");
    let line = error(&text);
    assert!(line.contains("unknown field `uid`"), "{line}");
}
