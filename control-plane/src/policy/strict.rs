//! The strict parse of a document into its resource type (unknown fields are errors),
//! through `serde_path_to_error`: serde-saphyr's error says on which line, the path says
//! which field (`spec.retries.backoff.base`).

use serde::de::DeserializeOwned;

use super::invalid::Invalid;
use super::located::Located;

/// Parses the document as a `T`; on failure, the first problem with its line and field
/// path.
pub(crate) fn parse<T: DeserializeOwned>(at: &Located<'_, '_>) -> Result<T, Invalid> {
    let doc = at.doc;
    let mut track = serde_path_to_error::Track::new();
    let result = serde_saphyr::with_deserializer_from_str(doc.text, |de| {
        T::deserialize(serde_path_to_error::Deserializer::new(de, &mut track))
    });
    result.map_err(|err| {
        let path = track.path().to_string();
        // "." is the root: a problem with the document as a whole (or its syntax).
        let field = (path != ".").then_some(path);
        let mut invalid = Invalid::yaml(doc, &err, field);
        clarify(&mut invalid, at);
        invalid
    })
}

/// Makes serde's terse messages say what was expected and what was written.
fn clarify(invalid: &mut Invalid, at: &Located<'_, '_>) {
    let Some(field) = invalid.field.clone() else {
        // "duplicate mapping key: x, set DuplicateKeyPolicy in Options if acceptable"
        if let Some(cut) = invalid.message.find(", set DuplicateKeyPolicy") {
            invalid.message.truncate(cut);
        }
        return;
    };
    if invalid.message.starts_with("missing field") {
        // serde-saphyr points after the mapping; the mapping's key is where to add it.
        invalid.line = at.line(&field);
        return;
    }
    // "invalid u32": which number types mean what, and what was written instead.
    let number = match invalid.message.as_str() {
        "invalid u16" => Some("a whole number from 0 to 65535"),
        "invalid u32" => Some("a whole number from 0 to 4294967295"),
        "invalid u64" => Some("a whole number from 0"),
        "invalid f64" => Some("a number"),
        "invalid bool" => Some("true or false"),
        _ => None,
    };
    if let Some(expected) = number {
        invalid.message = match at.scalar(&field) {
            Some(got) => format!("expected {expected}, got {got:?}"),
            None => format!("expected {expected}"),
        };
    }
}
