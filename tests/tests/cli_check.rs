//! `outrigger check`: the real binary on real files.

use outrigger_tests::{fixtures_dir, path, run, stderr, stdout};

#[test]
fn reports_every_mistake_with_its_file_line_and_field() {
    let dir = fixtures_dir().join("broken");
    let out = run("outrigger", &["check", path(&dir)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    let prefix = format!("{}/", path(&dir));
    let lines: Vec<&str> = text.lines().collect();
    let (errors, summary) = lines.split_at(lines.len() - 1);
    let located: Vec<String> = errors
        .iter()
        .map(|l| {
            let l = l.strip_prefix(&prefix).unwrap_or_else(|| panic!("{l}"));
            // file:line: field (what precedes the message).
            let mut parts = l.splitn(3, ": ");
            format!("{}: {}", parts.next().unwrap(), parts.next().unwrap())
        })
        .collect();
    assert_eq!(
        located,
        [
            "more.yaml:9: kind",
            "more.yaml:12: apiVersion",
            "server.yaml:8: spec.authorization.rules[0].from[0]",
            "server.yaml:9: spec.rateLimit.requestsPerSecond",
            "server.yaml:10: spec.concurrency",
            "server.yaml:16: spec.targetRef.kind",
            "server.yaml:22: spec.targetRef.name",
            "server.yaml:30: spec.mtls",
            "shop/services.yaml:5: spec.identity",
            "shop/services.yaml:7: spec.endpoints[0].address",
            "shop/services.yaml:11: metadata.name",
            "shop/services.yaml:18: metadata.name",
            "shop/services.yaml:21: spec.identity",
            "shop/traffic.yaml:7: spec.retries.backoff.base",
            "shop/traffic.yaml:15: spec.retries.retryOn[1]",
            "shop/traffic.yaml:16: spec.retries.backoff.base",
            "shop/traffic.yaml:17: spec.retries.budget.ratio",
            "shop/traffic.yaml:19: spec.circuitBreaker.maxEjectedPercent",
            "shop/traffic.yaml:20: spec.circuitBreaker.baseEjection",
            "shop/traffic.yaml:22: spec.fallback.status",
            "shop/traffic.yaml:24: spec.routes[0].match.pathPrefix",
            "shop/traffic.yaml:24: spec.routes[0].match.methods[0]",
            "shop/traffic.yaml:30: spec.targetRef.name",
            "shop/traffic.yaml:37: spec.retrys",
        ],
        "{text}"
    );
    // The messages say what is wrong.
    for says in [
        "unknown kind \"Gateway\"",
        "invalid identity glob",
        "already has a ServerPolicy: shop/payments at",
        "unknown variant `lax`",
        "MeshService shop/orders is already defined at",
        "invalid duration \"25\"",
        "unknown condition \"timeout\"",
        "1s is more than max 250ms",
        "150 is more than 100",
        "no MeshService named \"ghost\"",
        "unknown field `retrys`",
    ] {
        assert!(text.contains(says), "{says:?} in {text}");
    }
    assert_eq!(summary, ["24 errors in 4 files (4 files checked)"]);
}

#[test]
fn valid_files_exit_0() {
    let file = fixtures_dir().join("design-example.yaml");
    let out = run("outrigger", &["check", path(&file)]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(
        stdout(&out),
        "1 file valid: 1 MeshService, 1 TrafficPolicy, 1 ServerPolicy\n"
    );
}

#[test]
fn trust_domain_and_missing_paths() {
    let file = fixtures_dir().join("design-example.yaml");
    let out = run(
        "outrigger",
        &["check", "--trust-domain", "example.org", path(&file)],
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains(":6: spec.identity: spiffe://cluster.local/ns/shop/sa/payments is not in the trust domain example.org"), "{text}");
    assert!(
        text.contains(":50: spec.authorization.rules[0].from[0]: "),
        "{text}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope.yaml");
    let out = run("outrigger", &["check", path(&missing)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).starts_with(&format!("{}: cannot read: ", path(&missing))));

    let out = run("outrigger", &["check", path(tmp.path())]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("no policy files"), "{}", stdout(&out));
}
