//! What `outrigger status` prints from a [`MeshStatus`]: a table of the proxies, then
//! whether the mesh has converged on the current version, then any config errors.

use std::fmt::Write as _;

use outrigger_api::MeshStatus;

/// Renders `status`; the `bool` says whether the mesh has converged.
pub fn render(status: &MeshStatus) -> (String, bool) {
    let mut out = String::new();
    let header = [
        "PROXY",
        "IDENTITY",
        "SERVICE",
        "ADDRESS",
        "APPLIED",
        "LAST SEEN",
    ];
    let rows: Vec<[String; 6]> = status
        .proxies
        .iter()
        .map(|p| {
            let mut applied = p.applied_version.to_string();
            if p.connected && p.applied_version != status.version {
                applied.push_str(" (behind)");
            }
            let mut seen = ago(p.last_seen_ms_ago);
            if !p.connected {
                seen.push_str(" (disconnected)");
            }
            [
                p.proxy_id.clone(),
                p.identity.clone(),
                p.service.clone().unwrap_or_else(|| "-".into()),
                p.address.clone(),
                applied,
                seen,
            ]
        })
        .collect();
    if rows.is_empty() {
        out.push_str("no proxies known\n");
    } else {
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        let mut line = |cells: &[&str]| {
            let mut text = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    text.push_str(cell);
                } else {
                    let _ = write!(text, "{cell:<width$}  ", width = widths[i]);
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&header);
        for row in &rows {
            line(&row.each_ref().map(String::as_str));
        }
    }

    let connected = status.proxies.iter().filter(|p| p.connected).count();
    let behind = status
        .proxies
        .iter()
        .filter(|p| p.connected && p.applied_version != status.version)
        .count();
    if status.converged {
        let _ = writeln!(out, "converged on version {}", status.version);
    } else {
        let _ = writeln!(
            out,
            "not converged: {behind} of {connected} proxies behind version {}",
            status.version
        );
    }
    if !status.config_errors.is_empty() {
        let _ = writeln!(
            out,
            "config errors (the policy files are invalid; version {} is still served):",
            status.version
        );
        for e in &status.config_errors {
            let _ = writeln!(out, "  {e}");
        }
    }
    (out, status.converged)
}

fn ago(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms ago"),
        1_000..120_000 => format!("{}s ago", ms / 1_000),
        _ => format!("{}m ago", ms / 60_000),
    }
}

#[cfg(test)]
mod tests {
    use outrigger_api::ProxyStatus;

    use super::*;

    fn proxy(id: &str, applied: u64, connected: bool) -> ProxyStatus {
        ProxyStatus {
            proxy_id: id.into(),
            identity: format!("spiffe://cluster.local/ns/shop/sa/{id}"),
            service: (id != "tool").then(|| format!("shop/{id}")),
            address: "127.0.0.1:4143".into(),
            applied_version: applied,
            last_seen_ms_ago: 2_500,
            connected,
        }
    }

    #[test]
    fn converged_table() {
        let status = MeshStatus {
            version: 12,
            converged: true,
            config_errors: vec![],
            proxies: vec![proxy("orders", 12, true), proxy("tool", 3, false)],
        };
        let (text, converged) = render(&status);
        assert!(converged);
        assert_eq!(
            text,
            "\
PROXY   IDENTITY                                  SERVICE      ADDRESS         APPLIED  LAST SEEN
orders  spiffe://cluster.local/ns/shop/sa/orders  shop/orders  127.0.0.1:4143  12       2s ago
tool    spiffe://cluster.local/ns/shop/sa/tool    -            127.0.0.1:4143  3        2s ago (disconnected)
converged on version 12
"
        );
    }

    #[test]
    fn not_converged_with_config_errors() {
        let status = MeshStatus {
            version: 12,
            converged: false,
            config_errors: vec!["a.yaml:3: spec: bad".into()],
            proxies: vec![proxy("orders", 11, true), proxy("payments", 12, true)],
        };
        let (text, converged) = render(&status);
        assert!(!converged);
        assert!(text.contains("\norders    "), "{text}");
        assert!(text.contains("11 (behind)"), "{text}");
        assert!(
            text.ends_with(
                "not converged: 1 of 2 proxies behind version 12\n\
             config errors (the policy files are invalid; version 12 is still served):\n  \
             a.yaml:3: spec: bad\n"
            ),
            "{text}"
        );
        let empty = MeshStatus {
            version: 1,
            converged: true,
            config_errors: vec![],
            proxies: vec![],
        };
        assert_eq!(
            render(&empty).0,
            "no proxies known\nconverged on version 1\n"
        );
    }
}
