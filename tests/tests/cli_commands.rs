//! The CLI's own contract: `ca init`, `token create`, and start-up errors that exit 1
//! with one line naming what to fix.

use std::time::SystemTime;

use outrigger_control_plane::TokenKey;
use outrigger_tests::{Mesh, PAYMENTS_YAML, id, path, run, stderr, the_error_line};

#[test]
fn ca_init_twice_refuses_and_leaves_the_ca_alone() {
    let mesh = Mesh::with_payments();
    let ca_dir = mesh.data_dir().join("ca");
    let read_all = || {
        let mut files: Vec<_> = std::fs::read_dir(&ca_dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                (p.clone(), std::fs::read(&p).unwrap())
            })
            .collect();
        files.sort();
        files
    };
    let before = read_all();
    assert!(before.iter().any(|(p, _)| p.ends_with("token.key")));

    let out = run(
        "outrigger",
        &["ca", "init", "--data-dir", path(&mesh.data_dir())],
    );
    let line = the_error_line(&out);
    assert!(line.contains("already exists"), "{line}");
    assert!(line.contains(path(&ca_dir)), "{line}");
    assert_eq!(read_all(), before, "CA files unchanged");
}

#[test]
fn ca_init_says_where_the_trust_anchor_is() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    let out = run(
        "outrigger",
        &[
            "ca",
            "init",
            "--data-dir",
            path(&data),
            "--trust-domain",
            "example.org",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(path(&data.join("ca/trust-anchor.pem"))),
        "{stdout}"
    );
}

#[test]
fn token_create_prints_a_token_for_the_identity() {
    let mesh = Mesh::with_payments();
    let token = mesh.token("shop/orders");
    let key = TokenKey::load(&mesh.data_dir()).unwrap();
    assert_eq!(
        key.verify(&token, SystemTime::now()).unwrap(),
        id("shop/orders")
    );

    let out = run(
        "outrigger",
        &[
            "token",
            "create",
            "--data-dir",
            path(&mesh.data_dir()),
            "--identity",
            "orders",
        ],
    );
    assert!(the_error_line(&out).contains("--identity"));
    assert!(out.stdout.is_empty(), "nothing on stdout on failure");
}

#[test]
fn no_ca_names_the_dir_and_the_fix() {
    let mesh = Mesh::with_payments();
    let missing = mesh.policy_dir().parent().unwrap().join("nowhere");
    let out = run(
        "outrigger",
        &[
            "control-plane",
            "--data-dir",
            path(&missing),
            "--policy-dir",
            path(&mesh.policy_dir()),
        ],
    );
    let line = the_error_line(&out);
    assert!(line.contains(path(&missing)), "{line}");
    assert!(line.contains("outrigger ca init"), "{line}");
}

#[test]
fn port_in_use_names_the_address() {
    let mesh = Mesh::with_payments();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(
        "outrigger",
        &[
            "control-plane",
            "--data-dir",
            path(&mesh.data_dir()),
            "--policy-dir",
            path(&mesh.policy_dir()),
            "--listen",
            &addr,
            "--http",
            "127.0.0.1:0",
        ],
    );
    let line = the_error_line(&out);
    assert!(line.contains(&format!("cannot listen on {addr}")), "{line}");
}

#[test]
fn bad_policy_names_the_file_and_line() {
    let mesh = Mesh::with_payments();
    let bad = mesh.policy_dir().join("bad.yaml");
    std::fs::write(
        &bad,
        PAYMENTS_YAML
            .replace("payments", "billing")
            .replace("127.0.0.1:14143", "x"),
    )
    .unwrap();
    let out = run(
        "outrigger",
        &[
            "control-plane",
            "--data-dir",
            path(&mesh.data_dir()),
            "--policy-dir",
            path(&mesh.policy_dir()),
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ],
    );
    let line = the_error_line(&out);
    assert_eq!(
        line,
        format!(
            "error: {}:7: spec.endpoints[0].address: invalid address \"x\" (expected ip:port)",
            path(&bad)
        )
    );

    std::fs::write(
        &bad,
        "apiVersion: outrigger.dev/v1alpha1\nkind: MeshService\nmetadata: {name: [\n",
    )
    .unwrap();
    let out = run(
        "outrigger",
        &[
            "control-plane",
            "--data-dir",
            path(&mesh.data_dir()),
            "--policy-dir",
            path(&mesh.policy_dir()),
        ],
    );
    let line = the_error_line(&out);
    assert!(
        line.starts_with(&format!("error: {}:3", path(&bad))),
        "{line}"
    );
}
