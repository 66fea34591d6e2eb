//! The two text formats of `/metrics`, shared by the proxy and the control plane. Both
//! encode with `prometheus-client`, which writes OpenMetrics. Prometheus asks for that
//! format and gets it as is; any other scraper (curl, `promtool check metrics`, older
//! agents) gets the classic text format 0.0.4, derived here from the same text.
//!
//! The two differ only in their metadata: OpenMetrics names a counter's family without
//! `_total` (`# TYPE x counter` over samples `x_total`), may carry `# UNIT` lines, and ends
//! with `# EOF`. Samples, labels and escaping are the same.

/// Content type of OpenMetrics text 1.0.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the classic Prometheus text format.
pub const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether a scraper's `Accept` header asks for OpenMetrics (Prometheus does, first).
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| accept.contains("application/openmetrics-text"))
}

/// The body and content type to answer a scrape with, from OpenMetrics text.
pub fn negotiate(openmetrics: String, accept: Option<&str>) -> (String, &'static str) {
    if wants_openmetrics(accept) {
        (openmetrics, OPENMETRICS)
    } else {
        (classic(&openmetrics), CLASSIC)
    }
}

/// OpenMetrics text rewritten as the classic format: counter families take their
/// samples' `_total` name, and `# UNIT` and `# EOF` go.
pub fn classic(openmetrics: &str) -> String {
    let mut counters: Vec<&str> = Vec::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some(name) = rest.strip_suffix(" counter")
        {
            counters.push(name);
        }
    }
    let mut out = String::with_capacity(openmetrics.len() + counters.len() * 12);
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = line
            .strip_prefix("# HELP ")
            .map(|rest| ("# HELP ", rest))
            .or_else(|| line.strip_prefix("# TYPE ").map(|rest| ("# TYPE ", rest)));
        match meta {
            Some((kind, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(kind);
                out.push_str(name);
                if counters.contains(&name) && !name.ends_with("_total") {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: &str = "# HELP outrigger_requests Requests.\n\
        # TYPE outrigger_requests counter\n\
        outrigger_requests_total{service=\"a\"} 3\n\
        # HELP outrigger_latency_seconds Latency.\n\
        # TYPE outrigger_latency_seconds histogram\n\
        # UNIT outrigger_latency_seconds seconds\n\
        outrigger_latency_seconds_bucket{le=\"+Inf\"} 1\n\
        # HELP outrigger_config_version Version.\n\
        # TYPE outrigger_config_version gauge\n\
        outrigger_config_version 7\n\
        # EOF\n";

    #[test]
    fn counters_take_their_samples_name_and_openmetrics_only_lines_go() {
        let text = classic(OPEN);
        assert_eq!(
            text,
            "# HELP outrigger_requests_total Requests.\n\
             # TYPE outrigger_requests_total counter\n\
             outrigger_requests_total{service=\"a\"} 3\n\
             # HELP outrigger_latency_seconds Latency.\n\
             # TYPE outrigger_latency_seconds histogram\n\
             outrigger_latency_seconds_bucket{le=\"+Inf\"} 1\n\
             # HELP outrigger_config_version Version.\n\
             # TYPE outrigger_config_version gauge\n\
             outrigger_config_version 7\n"
        );
    }

    #[test]
    fn prometheus_gets_openmetrics_and_everyone_else_the_classic_format() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(OPEN.into(), Some(prometheus)).1, OPENMETRICS);
        assert!(
            negotiate(OPEN.into(), Some(prometheus))
                .0
                .ends_with("# EOF\n")
        );
        assert_eq!(negotiate(OPEN.into(), Some("*/*")).1, CLASSIC);
        assert_eq!(negotiate(OPEN.into(), None).1, CLASSIC);
    }
}
