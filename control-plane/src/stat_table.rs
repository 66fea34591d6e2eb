//! What `outrigger stat` prints from a [`MeshStats`]: a table of services (or of
//! caller→service edges with `--edges`) and their golden metrics.

use std::fmt::Write as _;

use outrigger_api::{Golden, MeshStats, Side};

/// What to show.
#[derive(Clone, Debug, Default)]
pub struct StatView {
    /// Only this service: `name.namespace`, `namespace/name`, or a bare `name`.
    pub service: Option<String>,
    pub edges: bool,
}

impl StatView {
    fn matches(&self, service: &str) -> bool {
        let Some(wanted) = &self.service else {
            return true;
        };
        let wanted = match wanted.split_once('/') {
            Some((namespace, name)) => format!("{name}.{namespace}"),
            None => wanted.clone(),
        };
        service == wanted
            || service
                .split_once('.')
                .is_some_and(|(name, _)| name == wanted)
    }
}

pub fn render(stats: &MeshStats, view: &StatView) -> String {
    let golden_header = ["REQ/S", "SUCCESS", "P50", "P90", "P99", "P99.9", "MAX"];
    let mut header: Vec<&str> = if view.edges {
        vec!["CALLER", "SERVICE", "SEEN BY"]
    } else {
        vec!["SERVICE"]
    };
    header.extend(golden_header);
    let rows: Vec<Vec<String>> = if view.edges {
        stats
            .edges
            .iter()
            .filter(|e| view.matches(&e.service))
            .map(|e| {
                let side = match e.side {
                    Side::Client => "caller",
                    Side::Server => "callee",
                };
                let mut row = vec![e.caller.clone(), e.service.clone(), side.to_string()];
                row.extend(golden_cells(&e.golden));
                row
            })
            .collect()
    } else {
        stats
            .services
            .iter()
            .filter(|s| view.matches(&s.service))
            .map(|s| {
                let mut row = vec![s.service.clone()];
                row.extend(golden_cells(&s.golden));
                row
            })
            .collect()
    };
    let mut out = String::new();
    if rows.is_empty() {
        let what = view.service.as_deref().unwrap_or("the mesh");
        let _ = writeln!(
            out,
            "no traffic measured for {what} in the last {}",
            stats.window
        );
        return out;
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    // Names left-aligned, numbers right-aligned.
    let names = header.len() - golden_header.len();
    let mut line = |cells: &[&str]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i < names {
                let _ = write!(text, "{cell:<width$}  ", width = widths[i]);
            } else {
                let _ = write!(text, "{cell:>width$}  ", width = widths[i]);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        line(&row.iter().map(String::as_str).collect::<Vec<_>>());
    }
    let _ = writeln!(
        out,
        "last {} ({:.0}s measured); latencies exact across sidecars",
        stats.window, stats.covered_secs
    );
    out
}

fn golden_cells(g: &Golden) -> [String; 7] {
    [
        format!("{:.1}", g.rate),
        g.success_rate
            .map_or("-".into(), |r| format!("{:.2}%", r * 100.0)),
        latency(g.p50_ms),
        latency(g.p90_ms),
        latency(g.p99_ms),
        latency(g.p999_ms),
        latency(g.max_ms),
    ]
}

/// Milliseconds with three significant digits at most, as precise as the histograms.
fn latency(ms: Option<f64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms >= 1000.0 => format!("{:.2}s", ms / 1000.0),
        Some(ms) if ms >= 100.0 => format!("{ms:.0}ms"),
        Some(ms) if ms >= 10.0 => format!("{ms:.1}ms"),
        Some(ms) => format!("{ms:.2}ms"),
    }
}

#[cfg(test)]
mod tests {
    use outrigger_api::{EdgeStats, ServiceStats};

    use super::*;

    fn golden(rate: f64, success: f64, p50: f64) -> Golden {
        Golden {
            requests: (rate * 60.0) as u64,
            successes: (rate * 60.0 * success) as u64,
            rate,
            success_rate: Some(success),
            p50_ms: Some(p50),
            p90_ms: Some(p50 * 2.0),
            p99_ms: Some(p50 * 10.0),
            p999_ms: Some(p50 * 40.0),
            max_ms: Some(p50 * 100.0),
        }
    }

    fn stats() -> MeshStats {
        MeshStats {
            window: "1m".into(),
            covered_secs: 60.0,
            services: vec![
                ServiceStats {
                    service: "payments.shop".into(),
                    golden: golden(12.5, 0.995, 2.345),
                },
                ServiceStats {
                    service: "search.web".into(),
                    golden: golden(300.0, 1.0, 15.0),
                },
            ],
            edges: vec![EdgeStats {
                caller: "shop/orders".into(),
                service: "payments.shop".into(),
                side: Side::Client,
                golden: golden(12.5, 0.995, 2.345),
            }],
            ..MeshStats::default()
        }
    }

    #[test]
    fn services_table() {
        assert_eq!(
            render(&stats(), &StatView::default()),
            "\
SERVICE        REQ/S  SUCCESS     P50     P90     P99   P99.9    MAX
payments.shop   12.5   99.50%  2.35ms  4.69ms  23.5ms  93.8ms  235ms
search.web     300.0  100.00%  15.0ms  30.0ms   150ms   600ms  1.50s
last 1m (60s measured); latencies exact across sidecars
"
        );
    }

    #[test]
    fn edges_and_filters() {
        let view = StatView {
            service: Some("shop/payments".into()),
            edges: true,
        };
        let text = render(&stats(), &view);
        assert!(
            text.starts_with("CALLER       SERVICE        SEEN BY  REQ/S"),
            "{text}"
        );
        assert!(
            text.contains("\nshop/orders  payments.shop  caller    12.5"),
            "{text}"
        );
        let bare = StatView {
            service: Some("search".into()),
            edges: false,
        };
        let text = render(&stats(), &bare);
        assert_eq!(text.lines().count(), 3, "{text}");
        let none = StatView {
            service: Some("nope".into()),
            edges: false,
        };
        assert_eq!(
            render(&stats(), &none),
            "no traffic measured for nope in the last 1m\n"
        );
    }
}
