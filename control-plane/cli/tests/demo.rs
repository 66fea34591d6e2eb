//! `outrigger demo` (the README's first command) runs the whole mesh and reports traffic
//! that crossed both sidecars with verified identities.

use std::process::Command;

#[test]
fn demo_reports_traffic_through_both_sidecars() {
    let output = Command::new(env!("CARGO_BIN_EXE_outrigger"))
        .args(["demo", "--once", "--any-ports", "--requests", "50"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("status 200: 50"), "{stdout}");
    assert!(!stdout.contains("mesh error"), "{stdout}");
    assert!(
        stdout.contains(
            "payments saw the caller as spiffe://cluster.local/ns/demo/sa/orders (50 requests)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "orders' sidecar verified the server as spiffe://cluster.local/ns/demo/sa/payments"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("p99"), "{stdout}");
}
