//! Every validation rule, through the loader: each problem at its file, line and field.

use std::path::Path;

use super::tests::{DESIGN_EXAMPLE, errors, load};
use super::*;

/// `DESIGN_EXAMPLE` with `from` replaced by `to` must give exactly one error, at `line`
/// and `field`, whose message contains `says`.
#[track_caller]
fn refused(from: &str, to: &str, line: u64, field: &str, says: &str) {
    let text = DESIGN_EXAMPLE.replacen(from, to, 1);
    assert_ne!(text, DESIGN_EXAMPLE, "{from:?} is not in the example");
    let lines = errors(&text);
    assert_eq!(lines.len(), 1, "{from:?} -> {to:?}: {lines:#?}");
    let prefix = format!("policy/shop.yaml:{line}: {field}: ");
    assert!(
        lines[0].starts_with(&prefix),
        "want {prefix}...\n got {}",
        lines[0]
    );
    assert!(lines[0].contains(says), "want {says:?} in {}", lines[0]);
}

#[test]
fn parse_errors() {
    refused(
        "base: 25ms",
        "base: 25",
        21,
        "spec.retries.backoff.base",
        "invalid duration \"25\"",
    );
    refused(
        "maxEjectedPercent: 50",
        "maxEjectedPercnt: 50",
        28,
        "spec.circuitBreaker.maxEjectedPercnt",
        "unknown field `maxEjectedPercnt`",
    );
    refused(
        "attempts: 2 ",
        "attempts: two ",
        18,
        "spec.retries.attempts",
        "expected a whole number from 0 to 4294967295, got \"two\"",
    );
    refused(
        "loadBalancer: peak-ewma",
        "loadBalancer: p2c",
        34,
        "spec.loadBalancer",
        "unknown variant `p2c`",
    );
    refused(
        "  targetRef: {kind: MeshService, name: payments}\n  timeouts",
        "  timeouts",
        14,
        "spec",
        "missing field `targetRef`",
    );
    refused(
        "  mtls: strict ",
        "  mtls: strikt ",
        46,
        "spec.mtls",
        "unknown variant `strikt`",
    );
}

#[test]
fn mesh_service_checks() {
    refused(
        "identity: spiffe://cluster.local/ns/shop/sa/payments",
        "identity: spiffe://cluster.local/shop/payments",
        6,
        "spec.identity",
        "expected /ns/<namespace>/sa/<service-account>",
    );
    refused(
        "identity: spiffe://cluster.local/ns/shop/sa/payments",
        "identity: spiffe://example.org/ns/shop/sa/payments",
        6,
        "spec.identity",
        "not in the trust domain cluster.local",
    );
    refused(
        "address: 127.0.0.1:14143",
        "address: localhost",
        9,
        "spec.endpoints[0].address",
        "expected ip:port",
    );
}

#[test]
fn service_addresses_are_ip_and_port() {
    let with = |list: &str| {
        DESIGN_EXAMPLE.replacen(
            "  endpoints:  ",
            &format!("  addresses: [{list}]\n  endpoints:  "),
            1,
        )
    };
    let good =
        load(&with("\"10.96.0.12:8080\", \"[fd00::1]:80\"")).unwrap_or_else(|e| panic!("{e}"));
    let service = &good.services[0];
    assert_eq!(service.addresses, ["10.96.0.12:8080", "[fd00::1]:80"]);
    for (list, field, says) in [
        ("\"10.96.0.12\"", "spec.addresses[0]", "expected ip:port"),
        (
            "\"10.96.0.12:80\", \"10.96.0.12:80\"",
            "spec.addresses[1]",
            "listed twice",
        ),
    ] {
        let lines = errors(&with(list));
        assert_eq!(lines.len(), 1, "{list}: {lines:#?}");
        let prefix = format!("policy/shop.yaml:8: {field}: ");
        assert!(lines[0].starts_with(&prefix), "{prefix} / {}", lines[0]);
        assert!(lines[0].contains(says), "{says} / {}", lines[0]);
    }
}

#[test]
fn traffic_policy_checks() {
    refused(
        "  targetRef: {kind: MeshService, name: payments}\n  timeouts",
        "  targetRef: {kind: Service, name: payments}\n  timeouts",
        15,
        "spec.targetRef.kind",
        "\"Service\" is not supported (expected MeshService)",
    );
    refused(
        "  targetRef: {kind: MeshService, name: payments}\n  timeouts",
        "  targetRef: {kind: MeshService, name: paymnts}\n  timeouts",
        15,
        "spec.targetRef.name",
        "no MeshService named \"paymnts\" in namespace shop",
    );
    refused(
        "maxEjectedPercent: 50",
        "maxEjectedPercent: 150",
        28,
        "spec.circuitBreaker.maxEjectedPercent",
        "150 is more than 100",
    );
    refused(
        "threshold: 0.5",
        "threshold: 1.5",
        25,
        "spec.circuitBreaker.failureRate.threshold",
        "1.5 is not between 0 and 1",
    );
    refused(
        "ratio: 0.2",
        "ratio: -0.2",
        22,
        "spec.retries.budget.ratio",
        "-0.2 is not between 0 and 1",
    );
    refused(
        "base: 25ms",
        "base: 500ms",
        21,
        "spec.retries.backoff.base",
        "500ms is more than max 250ms",
    );
    refused(
        "baseEjection: 30s",
        "baseEjection: 10m",
        26,
        "spec.circuitBreaker.baseEjection",
        "10m is more than maxEjection 5m",
    );
    refused(
        "gateway-error]",
        "gateway-eror]",
        20,
        "spec.retries.retryOn[3]",
        "unknown condition \"gateway-eror\"",
    );
    refused(
        "status: 200",
        "status: 700",
        35,
        "spec.fallback.status",
        "700 is not an HTTP status (100 to 599)",
    );
    refused(
        "methods: [POST]",
        "methods: [post]",
        37,
        "spec.routes[0].match.methods[0]",
        "\"post\" is not an HTTP method",
    );
    refused(
        "pathPrefix: /charge",
        "pathPrefix: charge",
        37,
        "spec.routes[0].match.pathPrefix",
        "\"charge\" does not start with '/'",
    );
    refused(
        "timeouts: {request: 5s}",
        "timeouts: {request: 0s}",
        39,
        "spec.routes[0].timeouts.request",
        "must be more than 0s",
    );
    refused(
        "maxConcurrentRequests: 1024",
        "maxConcurrentRequests: 0",
        30,
        "spec.bulkhead.maxConcurrentRequests",
        "at least 1",
    );
}

#[test]
fn server_policy_checks() {
    refused(
        "\"spiffe://cluster.local/ns/ops/sa/*\"",
        "\"spiffe://cluster.local/ns/ops/*\"",
        50,
        "spec.authorization.rules[0].from[1]",
        "invalid identity glob \"spiffe://cluster.local/ns/ops/*\"",
    );
    refused(
        "\"spiffe://cluster.local/ns/ops/sa/*\"",
        "\"spiffe://other.org/ns/ops/sa/*\"",
        50,
        "spec.authorization.rules[0].from[1]",
        "not in the trust domain cluster.local",
    );
    refused(
        "methods: [GET, POST]",
        "methods: [GET, PUSH]",
        51,
        "spec.authorization.rules[0].match.methods[1]",
        "\"PUSH\" is not an HTTP method",
    );
    refused(
        "match: {pathPrefix: /, methods",
        "match: {pathPrefix: api, methods",
        51,
        "spec.authorization.rules[0].match.pathPrefix",
        "does not start with '/'",
    );
    refused(
        "concurrency: {max: 256}",
        "concurrency: {max: 256, adaptive: true}",
        53,
        "spec.concurrency",
        "not both",
    );
    refused(
        "concurrency: {max: 256}",
        "concurrency: {adaptive: false}",
        53,
        "spec.concurrency",
        "set either max: N or adaptive: true",
    );
    refused(
        "requestsPerSecond: 500",
        "requestsPerSecond: 0",
        52,
        "spec.rateLimit.requestsPerSecond",
        "at least 1",
    );
    refused(
        "  targetRef: {kind: MeshService, name: payments}\n  mtls",
        "  targetRef: {kind: MeshService, name: orders}\n  mtls",
        45,
        "spec.targetRef.name",
        "no MeshService named \"orders\" in namespace shop",
    );
}

#[test]
fn every_problem_of_a_document_is_reported() {
    let text = DESIGN_EXAMPLE
        .replacen("base: 25ms", "base: 500ms", 1)
        .replacen("maxEjectedPercent: 50", "maxEjectedPercent: 101", 1)
        .replacen("status: 200", "status: 99", 1)
        .replacen("requestsPerSecond: 500", "requestsPerSecond: 0", 1)
        .replacen("concurrency: {max: 256}", "concurrency: {}", 1);
    let lines = errors(&text);
    let at: Vec<&str> = lines
        .iter()
        .map(|l| l.split(": ").next().unwrap())
        .collect();
    assert_eq!(
        at,
        [
            "policy/shop.yaml:21",
            "policy/shop.yaml:28",
            "policy/shop.yaml:35",
            "policy/shop.yaml:52",
            "policy/shop.yaml:53",
        ],
        "{lines:#?}"
    );
}

#[test]
fn a_parse_error_and_other_documents_problems_are_all_reported() {
    // The TrafficPolicy stops at its first parse error; the others still report theirs.
    let text = DESIGN_EXAMPLE
        .replacen("address: 127.0.0.1:14143", "address: nowhere", 1)
        .replacen("base: 25ms", "base: 25", 1)
        .replacen("status: 200", "status: 700", 1)
        .replacen("requestsPerSecond: 500", "requestsPerSecond: 0", 1);
    let lines = errors(&text);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(lines[0].starts_with("policy/shop.yaml:9: spec.endpoints[0].address"));
    assert!(lines[1].starts_with("policy/shop.yaml:21: spec.retries.backoff.base"));
    assert!(lines[2].starts_with("policy/shop.yaml:52: spec.rateLimit.requestsPerSecond"));
}

#[test]
fn a_broken_service_does_not_make_its_policies_fail_too() {
    let text = DESIGN_EXAMPLE.replacen("protocol: http ", "protocl: http ", 1);
    let lines = errors(&text);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("unknown field `protocl`"), "{lines:#?}");
}

#[test]
fn one_policy_of_each_kind_per_service_naming_both_files() {
    let mut loader = Loader::new("cluster.local");
    loader.add_file(Path::new("a/shop.yaml"), DESIGN_EXAMPLE);
    // Same targets, other names, in another file.
    let again = DESIGN_EXAMPLE
        .split("---\n")
        .skip(1)
        .collect::<Vec<_>>()
        .join("---\n")
        .replace(
            "metadata: {name: payments,",
            "metadata: {name: payments-v2,",
        );
    loader.add_file(Path::new("b/again.yaml"), &again);
    let lines = loader.finish().unwrap_err().lines();
    assert_eq!(
        lines,
        [
            "b/again.yaml:5: spec.targetRef.name: MeshService shop/payments already has a TrafficPolicy: shop/payments at a/shop.yaml:11",
            "b/again.yaml:35: spec.targetRef.name: MeshService shop/payments already has a ServerPolicy: shop/payments at a/shop.yaml:41",
        ]
    );
}

#[test]
fn duplicate_policy_names() {
    let policy = DESIGN_EXAMPLE.split("---\n").nth(1).unwrap().to_string();
    let text = format!("{DESIGN_EXAMPLE}---\n{policy}");
    let lines = errors(&text);
    assert_eq!(
        lines,
        [
            "policy/shop.yaml:57: metadata.name: TrafficPolicy shop/payments is already defined at policy/shop.yaml:11"
        ]
    );
}

#[test]
fn every_file_is_reported_and_io_errors_too() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    let bad1 = dir.path().join("bad1.yaml");
    let bad2 = dir.path().join("sub/bad2.yml");
    fs::create_dir(dir.path().join("sub")).unwrap();
    fs::write(&good, DESIGN_EXAMPLE).unwrap();
    fs::write(&bad1, "kind: MeshService\n").unwrap();
    fs::write(&bad2, "apiVersion: outrigger.dev/v1alpha1\nkind: Nope\n").unwrap();
    let missing = dir.path().join("missing.yaml");
    let err = load_paths(
        &[dir.path().to_path_buf(), missing.clone()],
        "cluster.local",
    )
    .unwrap_err();
    let files: Vec<&Path> = err.0.iter().map(|e| e.file.as_path()).collect();
    assert_eq!(files, [bad1.as_path(), missing.as_path(), bad2.as_path()]);
    assert_eq!(err.0[1].line, None);
    assert!(err.0[1].to_string().contains("cannot read"), "{err}");

    // A file named directly is read whatever its name.
    let txt = dir.path().join("svc.txt");
    fs::write(&txt, DESIGN_EXAMPLE).unwrap();
    assert_eq!(
        load_paths(&[txt], "cluster.local").unwrap().services.len(),
        1
    );
    assert!(load(DESIGN_EXAMPLE).is_ok());
}
