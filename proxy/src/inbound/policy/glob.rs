//! Identity globs of authorization rules: SPIFFE ids where `*` matches any run of
//! characters except `/`, e.g. `spiffe://cluster.local/ns/ops/sa/*`. Compiled once per
//! snapshot; matching allocates nothing.

/// A compiled `from` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct IdGlob {
    pattern: String,
    /// Since `*` never matches `/`, the pattern's and the id's `/`-separated parts pair up
    /// one to one: a glob is a list of per-part globs, and matching never backtracks
    /// across a `/`. Empty when the pattern has no `*` (plain comparison).
    parts: Vec<String>,
}

impl IdGlob {
    pub(super) fn new(pattern: &str) -> Self {
        let parts = if pattern.contains('*') {
            pattern.split('/').map(str::to_string).collect()
        } else {
            Vec::new()
        };
        IdGlob {
            pattern: pattern.to_string(),
            parts,
        }
    }

    pub(super) fn matches(&self, id: &str) -> bool {
        if self.parts.is_empty() {
            return id == self.pattern;
        }
        let mut ids = id.split('/');
        for part in &self.parts {
            match ids.next() {
                Some(segment) if wildcard(part.as_bytes(), segment.as_bytes()) => {}
                _ => return false,
            }
        }
        ids.next().is_none()
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of bytes (neither holds a
/// `/` here). The classic linear scan: on a mismatch, retry from the last `*` with one
/// more byte swallowed by it.
fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPS: &str = "spiffe://cluster.local/ns/ops/sa/*";

    #[test]
    fn exact_ids_match_only_themselves() {
        let glob = IdGlob::new("spiffe://cluster.local/ns/shop/sa/orders");
        assert!(glob.matches("spiffe://cluster.local/ns/shop/sa/orders"));
        assert!(!glob.matches("spiffe://cluster.local/ns/shop/sa/orders2"));
        assert!(!glob.matches("spiffe://cluster.local/ns/shop/sa/order"));
    }

    #[test]
    fn a_star_matches_within_one_segment() {
        let glob = IdGlob::new(OPS);
        assert!(glob.matches("spiffe://cluster.local/ns/ops/sa/monitor"));
        assert!(glob.matches("spiffe://cluster.local/ns/ops/sa/a-b.c"));
        assert!(!glob.matches("spiffe://cluster.local/ns/ops/sa/monitor/extra"));
        assert!(!glob.matches("spiffe://cluster.local/ns/opsx/sa/monitor"));
        assert!(!glob.matches("spiffe://cluster.local/ns/shop/sa/monitor"));
        assert!(!glob.matches("spiffe://other.org/ns/ops/sa/monitor"));
    }

    #[test]
    fn stars_in_several_places_and_with_prefixes() {
        let any = IdGlob::new("spiffe://cluster.local/ns/*/sa/*");
        assert!(any.matches("spiffe://cluster.local/ns/shop/sa/orders"));
        assert!(!any.matches("spiffe://cluster.local/ns/shop/x/sa/orders"));
        let prefix = IdGlob::new("spiffe://cluster.local/ns/team-*/sa/api");
        assert!(prefix.matches("spiffe://cluster.local/ns/team-a/sa/api"));
        assert!(!prefix.matches("spiffe://cluster.local/ns/team/sa/api"));
        let inner = IdGlob::new("spiffe://cluster.local/ns/a*b*c/sa/x");
        assert!(inner.matches("spiffe://cluster.local/ns/abc/sa/x"));
        assert!(inner.matches("spiffe://cluster.local/ns/aXbYbZc/sa/x"));
        assert!(!inner.matches("spiffe://cluster.local/ns/aXbYcZ/sa/x"));
    }
}
