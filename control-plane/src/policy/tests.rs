//! Loading policy files: what is accepted, and that every error names file:line.

use std::path::Path;

use outrigger_api::Protocol;

use super::*;

const PAYMENTS: &str = "\
apiVersion: outrigger.dev/v1alpha1
kind: MeshService
metadata: {name: payments, namespace: shop}
spec:
  identity: spiffe://cluster.local/ns/shop/sa/payments
  protocol: http
  endpoints:
    - address: 127.0.0.1:14143
";

fn load(text: &str) -> Result<Policy, PolicyError> {
    let mut loader = Loader::new("cluster.local");
    loader.add_file(Path::new("policy/shop.yaml"), text)?;
    Ok(loader.finish())
}

/// The error text for `text`, which must be refused.
fn error(text: &str) -> String {
    load(text).unwrap_err().to_string()
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
}

#[test]
fn skips_traffic_and_server_policies_and_empty_documents() {
    let text = format!(
        "# comment only\n---\n{PAYMENTS}---\napiVersion: outrigger.dev/v1alpha1\nkind: TrafficPolicy\n\
         metadata: {{name: payments, namespace: shop}}\nspec: {{anything: 1}}\n---\n\
         apiVersion: outrigger.dev/v1alpha1\nkind: ServerPolicy\nspec: {{}}\n---\n"
    );
    assert_eq!(load(&text).unwrap().services.len(), 1);
}

#[test]
fn bad_endpoint_names_the_file_line_and_field() {
    let text = PAYMENTS.replace("127.0.0.1:14143", "x");
    assert_eq!(
        error(&text),
        "policy/shop.yaml:8: spec.endpoints[0]: invalid address \"x\" (expected ip:port)"
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
        err.starts_with("policy/shop.yaml:17: spec.endpoints[0]"),
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
    assert!(err.starts_with("policy/shop.yaml:15: "), "{err}");
    assert!(err.contains("protocl"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
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
        "policy/shop.yaml:10: MeshService shop/payments is already defined at policy/shop.yaml:1"
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

    let err = load_dir(&dir.path().join("missing"), "cluster.local").unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}
