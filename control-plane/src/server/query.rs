//! The query string of `GET /v1/watch?service=<namespace>/<name>&proxy=<proxy_id>`.

use crate::policy::ServiceKey;

/// Longest proxy id accepted: ids are chosen by proxies, and end up in logs and status.
pub(crate) const MAX_PROXY_ID: usize = 128;

#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct WatchQuery {
    pub service: Option<ServiceKey>,
    pub proxy: Option<String>,
}

/// Parses the query; unknown parameters are ignored (newer proxies may send more).
pub(crate) fn parse_watch(query: Option<&str>) -> Result<WatchQuery, String> {
    let mut out = WatchQuery::default();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value).ok_or_else(|| format!("{name}: bad percent-encoding"))?;
        match name {
            "service" => out.service = Some(value.parse().map_err(|e| format!("service: {e}"))?),
            "proxy" => out.proxy = Some(check_proxy_id(&value)?),
            _ => {}
        }
    }
    Ok(out)
}

/// A proxy id: 1 to 128 printable ASCII characters, no spaces.
pub(crate) fn check_proxy_id(id: &str) -> Result<String, String> {
    let ok = !id.is_empty() && id.len() <= MAX_PROXY_ID && id.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(id.to_string())
    } else {
        Err(format!(
            "proxy: {id:?} is not a proxy id (1 to {MAX_PROXY_ID} printable ASCII characters, no spaces)"
        ))
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_service_and_proxy() {
        assert_eq!(parse_watch(None).unwrap(), WatchQuery::default());
        let q = parse_watch(Some("service=shop%2Fpayments&proxy=p-1&x=y")).unwrap();
        assert_eq!(q.service, Some(ServiceKey::new("shop", "payments")));
        assert_eq!(q.proxy.as_deref(), Some("p-1"));
        let q = parse_watch(Some("service=shop/payments")).unwrap();
        assert_eq!(q.service, Some(ServiceKey::new("shop", "payments")));
        for bad in [
            "service=payments",
            "service=Shop/x",
            "proxy=",
            "proxy=a+b",
            "service=%zz",
        ] {
            assert!(parse_watch(Some(bad)).is_err(), "{bad}");
        }
        assert!(parse_watch(Some(&format!("proxy={}", "a".repeat(129)))).is_err());
    }
}
