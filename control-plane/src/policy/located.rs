//! One document being checked: its text's tree, to turn a field path into the file line
//! an error points at.

use outrigger_api::{FieldError, ObjectMeta};
use serde_saphyr::Spanned;

use super::documents::Document;
use super::invalid::Invalid;
use super::tree::{self, Node};

pub(crate) struct Located<'d, 'a> {
    pub doc: &'d Document<'a>,
    tree: Option<Spanned<Node>>,
}

impl<'d, 'a> Located<'d, 'a> {
    pub(super) fn new(doc: &'d Document<'a>) -> Self {
        Located {
            doc,
            tree: Node::parse(doc.text),
        }
    }

    /// The file line of the field at `path` (or of the deepest part of it that is written,
    /// or of the document's start).
    pub(super) fn line(&self, path: &str) -> u64 {
        let line = self.tree.as_ref().and_then(|t| tree::locate(t, path));
        match line {
            Some(line) if line > 0 => self.doc.line_offset + line,
            _ => self.doc.first_content_line(),
        }
    }

    /// A problem with the field at `path`, at its line.
    pub(super) fn error(&self, path: &str, message: impl Into<String>) -> Invalid {
        Invalid {
            line: self.line(path),
            field: Some(path.to_string()),
            message: message.into(),
        }
    }

    pub(super) fn field_error(&self, e: FieldError) -> Invalid {
        self.error(&e.path, e.message)
    }

    /// The text of a scalar field, read leniently: the name of a resource whose strict
    /// parse failed, so that others referring to it are not reported too.
    pub(super) fn scalar(&self, path: &str) -> Option<String> {
        self.tree.as_ref().and_then(|t| tree::scalar(t, path))
    }

    /// `metadata.name` and `metadata.namespace` must be DNS labels.
    pub(super) fn check_meta(&self, meta: &ObjectMeta, errors: &mut Vec<Invalid>) {
        for (field, value) in [
            ("metadata.name", &meta.name),
            ("metadata.namespace", &meta.namespace),
        ] {
            if !is_dns_label(value) {
                errors.push(self.error(field, format!("{value:?} {NAME_RULE}")));
            }
        }
    }
}

pub(crate) const NAME_RULE: &str = "is not a valid name (lowercase letters, digits and '-', at most 63, starting and ending with a letter or digit)";

/// An RFC 1123 label, as Kubernetes requires of service names and namespaces: the name
/// also becomes the authority apps call (`http://payments/`).
pub(crate) fn is_dns_label(s: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| alnum(b) || b == b'-')
        && s.bytes().next().is_some_and(alnum)
        && s.bytes().last().is_some_and(alnum)
}
