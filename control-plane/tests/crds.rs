//! `k8s/crds/` is what the Rust types make: regenerate and compare.

use std::path::Path;

#[test]
fn k8s_crds_match_the_rust_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../k8s/crds");
    let rendered = outrigger_control_plane::crds::render().expect("the CRDs render");
    for (file, yaml) in rendered {
        let path = dir.join(file);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == yaml,
            "{} is not what the Rust types make; run `cargo run -p outrigger-cli -- crds --dir k8s/crds` and commit the result",
            path.display()
        );
    }
}
