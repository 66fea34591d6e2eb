//! Which requests a rule or a route is about (`match: {pathPrefix, methods, headers}`),
//! compiled once per snapshot and checked without allocating. Headers match exactly
//! (names in any case, values as written); only TrafficPolicy routes may use them.
//!
//! `pathPrefix` matches whole path segments, as Kubernetes' Gateway API does: `/api`
//! matches `/api` and `/api/v1`, not `/apiv2`. A path that is not in normal form (a `.`
//! or `..` segment, an encoded `.`, `/` or `\`, a `\`) matches no prefix but `/`: an app
//! may resolve it to a different path than it reads as, and an allow rule must not be
//! widened by a trick of spelling.

use http::Method;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use outrigger_api::RequestMatch;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RequestMatcher {
    /// Without its trailing `/`; `None` (or `/`) matches every path.
    path_prefix: Option<String>,
    /// Upper case; empty matches every method.
    methods: Vec<String>,
    /// Each must be present with exactly this value.
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl RequestMatcher {
    pub(crate) fn new(spec: &RequestMatch) -> Self {
        let path_prefix = spec
            .path_prefix
            .as_deref()
            .map(|p| p.trim_end_matches('/'))
            .filter(|p| !p.is_empty())
            .map(str::to_string);
        RequestMatcher {
            path_prefix,
            methods: spec
                .methods
                .iter()
                .map(|m| m.to_ascii_uppercase())
                .collect(),
            // Validated by the control plane; anything unreadable could never match.
            headers: spec
                .headers
                .iter()
                .filter_map(|(name, value)| {
                    Some((
                        HeaderName::from_bytes(name.as_bytes()).ok()?,
                        HeaderValue::from_str(value).ok()?,
                    ))
                })
                .collect(),
        }
    }

    /// Method and path only: what authorization rules match on (they cannot name
    /// headers).
    pub(crate) fn matches(&self, method: &Method, path: &str) -> bool {
        self.matches_method(method) && self.matches_path(path)
    }

    /// Method, path and headers: what a TrafficPolicy route matches on.
    pub(crate) fn matches_request(&self, method: &Method, path: &str, headers: &HeaderMap) -> bool {
        self.matches(method, path)
            && self
                .headers
                .iter()
                .all(|(name, value)| headers.get_all(name).iter().any(|v| v == value))
    }

    pub(crate) fn matches_method(&self, method: &Method) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|m| m == method.as_str())
    }

    pub(crate) fn matches_path(&self, path: &str) -> bool {
        let Some(prefix) = &self.path_prefix else {
            return true;
        };
        let Some(rest) = path.strip_prefix(prefix.as_str()) else {
            return false;
        };
        (rest.is_empty() || rest.starts_with('/')) && is_normal(path)
    }

    /// The prefix as written (for messages); `/` when every path matches.
    pub(crate) fn path_prefix(&self) -> &str {
        self.path_prefix.as_deref().unwrap_or("/")
    }

    pub(crate) fn methods(&self) -> &[String] {
        &self.methods
    }
}

/// Whether a path reads as what it is: no dot segments, no encoded separators or dots.
fn is_normal(path: &str) -> bool {
    if path.contains('\\') {
        return false;
    }
    if path
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return false;
    }
    let bytes = path.as_bytes();
    !bytes.windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                (w[1], w[2].to_ascii_lowercase()),
                (b'2', b'e') | (b'2', b'f') | (b'5', b'c')
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(prefix: Option<&str>, methods: &[&str]) -> RequestMatcher {
        RequestMatcher::new(&RequestMatch {
            path_prefix: prefix.map(str::to_string),
            methods: methods.iter().map(|m| m.to_string()).collect(),
            ..RequestMatch::default()
        })
    }

    #[test]
    fn empty_matches_everything() {
        let any = matcher(None, &[]);
        assert!(any.matches(&Method::DELETE, "/x/../y"));
        let root = matcher(Some("/"), &[]);
        assert!(root.matches(&Method::GET, "/"));
        assert!(root.matches(&Method::GET, "/a/b"));
        assert_eq!(root.path_prefix(), "/");
    }

    #[test]
    fn prefixes_match_whole_segments() {
        let api = matcher(Some("/api"), &[]);
        assert!(api.matches_path("/api"));
        assert!(api.matches_path("/api/"));
        assert!(api.matches_path("/api/v1/x"));
        assert!(!api.matches_path("/apiv2"));
        assert!(!api.matches_path("/"));
        let slash = matcher(Some("/api/"), &[]);
        assert!(slash.matches_path("/api/v1"));
        assert!(slash.matches_path("/api"));
    }

    #[test]
    fn tricky_spellings_match_no_prefix() {
        let public = matcher(Some("/public"), &[]);
        for path in [
            "/public/../admin",
            "/public/./x",
            "/public/%2e%2e/admin",
            "/public/..%2Fadmin",
            "/public\\..\\admin",
        ] {
            assert!(!public.matches_path(path), "{path}");
        }
        assert!(public.matches_path("/public/.well-known/x"));
        assert!(public.matches_path("/public/a%20b"));
    }

    #[test]
    fn headers_match_exactly_by_name_in_any_case() {
        let canary = RequestMatcher::new(&RequestMatch {
            headers: [("X-Canary".to_string(), "true".to_string())].into(),
            ..RequestMatch::default()
        });
        let mut headers = HeaderMap::new();
        assert!(!canary.matches_request(&Method::GET, "/", &headers));
        headers.insert("x-canary", HeaderValue::from_static("TRUE"));
        assert!(
            !canary.matches_request(&Method::GET, "/", &headers),
            "values are exact"
        );
        headers.append("x-canary", HeaderValue::from_static("true"));
        assert!(
            canary.matches_request(&Method::GET, "/", &headers),
            "any of the values"
        );
        let any = matcher(None, &[]);
        assert!(any.matches_request(&Method::GET, "/", &HeaderMap::new()));
    }

    #[test]
    fn methods_are_compared_in_upper_case() {
        let reads = matcher(None, &["GET", "head"]);
        assert!(reads.matches_method(&Method::GET));
        assert!(reads.matches_method(&Method::HEAD));
        assert!(!reads.matches_method(&Method::POST));
    }
}
