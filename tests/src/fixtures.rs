//! Policy files the control-plane tests start from: the payments MeshService, and the
//! files in `tests/fixtures/` (DESIGN.md's example, and the broken files `outrigger check`
//! must report).

use std::path::{Path, PathBuf};

/// shop/payments with one static endpoint: `shop.yaml` in [`crate::Mesh::with_payments`].
pub const PAYMENTS_YAML: &str = "\
apiVersion: outrigger.dev/v1alpha1
kind: MeshService
metadata: {name: payments, namespace: shop}
spec:
  identity: spiffe://cluster.local/ns/shop/sa/payments
  endpoints:
    - address: 127.0.0.1:14143
";

/// DESIGN.md's example: MeshService, TrafficPolicy and ServerPolicy shop/payments.
pub const DESIGN_EXAMPLE: &str = include_str!("../fixtures/design-example.yaml");

/// `tests/fixtures/`.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}
