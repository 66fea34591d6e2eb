//! The real binary, given bad configuration: one clear line naming what is wrong, and a
//! non-zero exit. (This test also makes `cargo test --workspace` build the binary that the
//! end-to-end tests start.)

use std::net::TcpListener;
use std::process::{Command, Output};

fn proxy(env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let anchors = dir.path().join("anchors.pem");
    let token = dir.path().join("token");
    std::fs::write(&token, "v1.token").unwrap();
    // A real (self-signed) certificate so that only the setting under test is wrong.
    let anchor = throwaway_anchor();
    std::fs::write(&anchors, anchor).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_outrigger-proxy"));
    command
        .env_clear()
        .env("OUTRIGGER_TRUST_ANCHORS", &anchors)
        .env("OUTRIGGER_TOKEN_FILE", &token)
        .env("OUTRIGGER_INBOUND_ADDR", "127.0.0.1:0")
        .env("OUTRIGGER_OUTBOUND_ADDR", "127.0.0.1:0")
        .env("OUTRIGGER_ADMIN_ADDR", "127.0.0.1:0")
        .env("OUTRIGGER_CONTROL_PLANE", "127.0.0.1:1");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

/// A CA certificate from a throwaway mesh CA.
fn throwaway_anchor() -> String {
    let dir = tempfile::tempdir().unwrap();
    outrigger_certs::init_ca(dir.path(), "cluster.local").unwrap();
    std::fs::read_to_string(dir.path().join("ca/trust-anchor.pem")).unwrap()
}

fn error_line(output: &Output) -> String {
    assert!(!output.status.success(), "must fail");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "exactly one error line in: {stderr}");
    errors[0].to_string()
}

#[test]
fn a_bad_environment_variable_is_named() {
    let line = error_line(&proxy(&[("OUTRIGGER_ADMIN_ADDR", "localhost:x")]));
    assert!(line.contains("OUTRIGGER_ADMIN_ADDR"), "{line}");
    let line = error_line(&proxy(&[("OUTRIGGER_CONNECT_TIMEOUT", "5")]));
    assert!(
        line.contains("OUTRIGGER_CONNECT_TIMEOUT") && line.contains("\"5\""),
        "{line}"
    );
    let line = error_line(&proxy(&[("OUTRIGGER_WORKERS", "0")]));
    assert!(line.contains("OUTRIGGER_WORKERS"), "{line}");
}

#[test]
fn a_port_in_use_is_named() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let line = error_line(&proxy(&[("OUTRIGGER_OUTBOUND_ADDR", &addr)]));
    assert!(
        line.contains(&addr) && line.contains("OUTRIGGER_OUTBOUND_ADDR"),
        "{line}"
    );
}

#[test]
fn unreadable_files_are_named() {
    let line = error_line(&proxy(&[(
        "OUTRIGGER_TRUST_ANCHORS",
        "/nonexistent/anchors.pem",
    )]));
    assert!(
        line.contains("/nonexistent/anchors.pem") && line.contains("trust anchors"),
        "{line}"
    );
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let line = error_line(&proxy(&[(
        "OUTRIGGER_TRUST_ANCHORS",
        garbage.to_str().unwrap(),
    )]));
    assert!(line.contains("garbage.pem"), "{line}");
    let empty = dir.path().join("empty-token");
    std::fs::write(&empty, "\n").unwrap();
    let line = error_line(&proxy(&[("OUTRIGGER_TOKEN_FILE", empty.to_str().unwrap())]));
    assert!(
        line.contains("empty-token") && line.contains("empty"),
        "{line}"
    );
}

#[test]
fn missing_settings_are_listed() {
    let output = Command::new(env!("CARGO_BIN_EXE_outrigger-proxy"))
        .env_clear()
        .output()
        .unwrap();
    let line = error_line(&output);
    assert!(
        line.contains("OUTRIGGER_TRUST_ANCHORS") && line.contains("OUTRIGGER_TOKEN_FILE"),
        "{line}"
    );
}
