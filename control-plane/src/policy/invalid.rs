//! A problem in one document, located at a line of its file; and the conversion from
//! serde-saphyr's errors, whose lines count from the start of the document.

use serde_saphyr::Location;

use super::documents::Document;

/// What is wrong, about which field, and on which line of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub line: u64,
    /// The field's path from the document's root (`spec.retries.backoff.base`), if the
    /// problem is about one field.
    pub field: Option<String>,
    pub message: String,
}

impl Invalid {
    /// A problem at `location` inside `doc`; at the document's start if the parser did not
    /// say where.
    pub(super) fn at(
        doc: &Document<'_>,
        location: Option<Location>,
        field: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        Invalid::at_line(doc, location.map(|l| l.line()), field, message)
    }

    /// A problem at `line` (1-based within `doc`; 0 or `None`: the document's start).
    pub(super) fn at_line(
        doc: &Document<'_>,
        line: Option<u64>,
        field: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        let line = match line {
            Some(line) if line > 0 => doc.line_offset + line,
            _ => doc.first_content_line(),
        };
        Invalid {
            line,
            field,
            message: message.into(),
        }
    }

    /// A YAML syntax or shape error (unknown field, wrong type, missing field), about the
    /// field at `path` if known.
    pub(super) fn yaml(
        doc: &Document<'_>,
        err: &serde_saphyr::Error,
        path: Option<String>,
    ) -> Self {
        Invalid::at(doc, err.location(), path, plain_message(err))
    }
}

/// serde-saphyr's message without its own location suffix (ours, with the file's real
/// line, goes in front) and on one line.
fn plain_message(err: &serde_saphyr::Error) -> String {
    let options = serde_saphyr::render_options! {
        snippets: serde_saphyr::SnippetMode::Off,
    };
    let rendered = err.render_with_options(options);
    let first = rendered.lines().next().unwrap_or_default();
    let trimmed = match first.rfind(" at line ") {
        Some(at) => &first[..at],
        None => first,
    };
    trimmed.trim().to_string()
}
