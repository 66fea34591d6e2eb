//! The first look at a document: `apiVersion` and `kind`, read before the full parse so
//! that the right type (with its own unknown-field rules) parses the rest.

use outrigger_api::{API_VERSION, TypeHeader};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::documents::Document;
use super::invalid::Invalid;

/// The kinds this control plane knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    MeshService,
    TrafficPolicy,
    ServerPolicy,
}

/// Where `apiVersion` and `kind` are, to point errors at them. Lenient on purpose: the
/// strict parse is the type's own.
#[derive(Deserialize)]
struct HeaderSpans {
    #[serde(default, rename = "apiVersion")]
    api_version: Option<Spanned<String>>,
    #[serde(default)]
    kind: Option<Spanned<String>>,
}

/// Reads and checks the header of `doc`.
pub(crate) fn read(doc: &Document<'_>) -> Result<Kind, Invalid> {
    let header: TypeHeader =
        serde_saphyr::from_str(doc.text).map_err(|e| Invalid::yaml(doc, &e, None))?;
    let spans: Option<HeaderSpans> = serde_saphyr::from_str(doc.text).ok();
    let api_line = spans
        .as_ref()
        .and_then(|s| s.api_version.as_ref())
        .map(|s| s.referenced);
    let kind_line = spans
        .as_ref()
        .and_then(|s| s.kind.as_ref())
        .map(|s| s.referenced);

    match header.api_version.as_deref() {
        Some(API_VERSION) => {}
        None => {
            return Err(Invalid::at(
                doc,
                None,
                Some("apiVersion".into()),
                format!("missing (expected {API_VERSION})"),
            ));
        }
        Some(other) => {
            return Err(Invalid::at(
                doc,
                api_line,
                Some("apiVersion".into()),
                format!("{other:?} is not supported (expected {API_VERSION})"),
            ));
        }
    }
    match header.kind.as_deref() {
        Some("MeshService") => Ok(Kind::MeshService),
        Some("TrafficPolicy") => Ok(Kind::TrafficPolicy),
        Some("ServerPolicy") => Ok(Kind::ServerPolicy),
        None => Err(Invalid::at(
            doc,
            None,
            Some("kind".into()),
            "missing (expected MeshService, TrafficPolicy or ServerPolicy)",
        )),
        Some(other) => Err(Invalid::at(
            doc,
            kind_line,
            Some("kind".into()),
            format!("unknown kind {other:?} (expected MeshService, TrafficPolicy or ServerPolicy)"),
        )),
    }
}
