//! The files of `k8s/crds/`, rendered from the Rust types (`outrigger crds`). A test
//! renders them again and compares, so a change to a spec type that is not carried into
//! the manifests fails CI.

use outrigger_api::crd;

/// The first line of every generated file: it says how to make it again.
pub const HEADER: &str =
    "# Generated from the Rust types by `outrigger crds --dir k8s/crds`: do not edit.\n";

/// Why the CRDs could not be rendered (a type kube cannot describe; a bug, not input).
#[derive(Debug, thiserror::Error)]
#[error("cannot render the CRD {file}: {message}")]
pub struct RenderError {
    file: &'static str,
    message: String,
}

/// Each CRD's file name and YAML text.
pub fn render() -> Result<Vec<(&'static str, String)>, RenderError> {
    crd::crds()
        .into_iter()
        .map(|(file, crd)| {
            let yaml = serde_saphyr::to_string(&crd).map_err(|e| RenderError {
                file,
                message: e.to_string(),
            })?;
            Ok((file, format!("{HEADER}{yaml}")))
        })
        .collect()
}
