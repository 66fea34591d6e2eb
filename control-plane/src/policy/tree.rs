//! A document as a plain tree of nodes that remember their lines, to point a check's
//! error at the field it is about: `spec.retries.backoff.base` → the line of `base:`.
//! Read leniently (any YAML), after the strict parse, only to locate.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// One YAML node, located.
#[derive(Debug)]
pub(crate) enum Node {
    /// Any scalar (string, number, bool, null), as text.
    Scalar(String),
    Seq(Vec<Spanned<Node>>),
    /// Keys with where each key is written.
    Map(Vec<(Spanned<Node>, Spanned<Node>)>),
}

impl Node {
    /// Reads `text` (one document); `None` if it is not YAML.
    pub(super) fn parse(text: &str) -> Option<Spanned<Node>> {
        serde_saphyr::from_str(text).ok()
    }

    fn scalar(&self) -> Option<&str> {
        match self {
            Node::Scalar(s) => Some(s),
            _ => None,
        }
    }
}

/// The line (1-based, within the document) of the field at `path`
/// (`spec.routes[0].match.pathPrefix`): the line of its key, or of the sequence item.
/// When the path goes further than the document (a defaulted field), the line of the
/// deepest part that is written.
pub(crate) fn locate(root: &Spanned<Node>, path: &str) -> Option<u64> {
    let mut node = root;
    let mut line = None;
    for segment in segments(path) {
        let next = match (segment, &node.value) {
            (Segment::Key(key), Node::Map(entries)) => entries
                .iter()
                .find(|(k, _)| k.value.scalar() == Some(key))
                .map(|(k, v)| (k.referenced.line(), v)),
            (Segment::Index(i), Node::Seq(items)) => {
                items.get(i).map(|item| (item.referenced.line(), item))
            }
            _ => None,
        };
        match next {
            Some((at, child)) => {
                if at > 0 {
                    line = Some(at);
                }
                node = child;
            }
            None => break,
        }
    }
    line
}

/// The text of the scalar at `path`, if it is written and is one.
pub(crate) fn scalar(root: &Spanned<Node>, path: &str) -> Option<String> {
    let mut node = root;
    for segment in segments(path) {
        node = match (segment, &node.value) {
            (Segment::Key(key), Node::Map(entries)) => entries
                .iter()
                .find(|(k, _)| k.value.scalar() == Some(key))
                .map(|(_, v)| v)?,
            (Segment::Index(i), Node::Seq(items)) => items.get(i)?,
            _ => return None,
        };
    }
    node.value.scalar().map(str::to_string)
}

#[derive(Debug, PartialEq, Eq)]
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// `a.b[2].c` → `a`, `b`, `2`, `c`. A map key holding `.` cannot be told apart; such
/// keys (header names) are last in a path, so the deepest match is still close.
fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(at) => part.split_at(at),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Segment::Key(key));
        }
        while let Some(stripped) = rest.strip_prefix('[') {
            let Some(end) = stripped.find(']') else { break };
            match stripped[..end].parse() {
                Ok(i) => out.push(Segment::Index(i)),
                Err(_) => break,
            }
            rest = &stripped[end + 1..];
        }
    }
    out
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Node, E> {
        Ok(Node::Scalar(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar(String::new()))
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar(String::new()))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key()? {
            entries.push((key, map.next_value()?));
        }
        Ok(Node::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
kind: TrafficPolicy
spec:
  retries:
    retryOn: [reset, bogus]
    backoff:
      base: 25
      max: 10ms
  routes:
    - match: {pathPrefix: charge}
    - match:
        methods:
          - GET
          - get
";

    #[test]
    fn locates_keys_and_items() {
        let root = Node::parse(DOC).unwrap();
        let at = |path| locate(&root, path);
        assert_eq!(at("kind"), Some(1));
        assert_eq!(at("spec.retries"), Some(3));
        assert_eq!(at("spec.retries.retryOn[1]"), Some(4));
        assert_eq!(at("spec.retries.backoff.base"), Some(6));
        assert_eq!(at("spec.routes[0].match.pathPrefix"), Some(9));
        assert_eq!(at("spec.routes[1].match.methods[1]"), Some(13));
        // Not written: the deepest part that is.
        assert_eq!(at("spec.retries.budget.ratio"), Some(3));
        assert_eq!(at("metadata.name"), None);
        assert_eq!(scalar(&root, "kind").as_deref(), Some("TrafficPolicy"));
        assert_eq!(
            scalar(&root, "spec.retries.backoff.base").as_deref(),
            Some("25")
        );
        assert_eq!(scalar(&root, "spec.retries.backoff"), None);
    }

    #[test]
    fn splits_paths() {
        assert_eq!(
            segments("a.b[2][3].c"),
            [
                Segment::Key("a"),
                Segment::Key("b"),
                Segment::Index(2),
                Segment::Index(3),
                Segment::Key("c")
            ]
        );
    }
}
