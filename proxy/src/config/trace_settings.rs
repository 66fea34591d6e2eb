//! The settings of tracing: the access log and span export (docs/tracing.md). Trace
//! context and `x-request-id` need none: they are always handled.

use std::time::Duration;

use http::Uri;

/// Where an OTLP/HTTP collector takes traces, below the endpoint the user gives.
const TRACES_PATH: &str = "/v1/traces";

#[derive(Clone, Debug, clap::Args)]
pub struct TraceSettings {
    /// `json`: one JSON line per request on stdout (diagnostics stay on stderr);
    /// `off`: no access log.
    #[arg(long, env = "OUTRIGGER_ACCESS_LOG", default_value = "off")]
    pub access_log: AccessLogFormat,

    /// OTLP/HTTP collector (`http://collector:4318`): spans are POSTed as JSON to
    /// `<endpoint>/v1/traces`. Unset: no spans are made.
    #[arg(long, env = "OUTRIGGER_OTLP_ENDPOINT", value_parser = traces_uri)]
    pub otlp_endpoint: Option<Uri>,

    /// The longest a finished span waits before it is sent (a full batch goes at once).
    #[arg(long, env = "OUTRIGGER_OTLP_BATCH_INTERVAL", default_value = "1s", value_parser = parse_interval)]
    pub otlp_batch_interval: Duration,

    /// Spans waiting to be sent; while it is full, new spans are dropped and counted.
    #[arg(long, env = "OUTRIGGER_OTLP_QUEUE_SIZE", default_value_t = 2048, value_parser = clap::value_parser!(u32).range(1..))]
    pub otlp_queue_size: u32,
}

/// The access log's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AccessLogFormat {
    Off,
    Json,
}

/// The collector's traces URI from its base endpoint: plain HTTP (a collector beside
/// the proxy, or a node agent), with a host.
fn traces_uri(endpoint: &str) -> Result<Uri, String> {
    let uri: Uri = endpoint
        .parse()
        .map_err(|e| format!("not a URI ({e}); expected http://host:port"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(
                "https is not supported yet: use plain http to a collector on the node".into(),
            );
        }
        _ => return Err("expected http://host:port".into()),
    }
    if uri.authority().is_none() {
        return Err("expected http://host:port".into());
    }
    if uri.query().is_some() {
        return Err("a query has no place in an endpoint".into());
    }
    let base = uri.path().trim_end_matches('/');
    format!(
        "http://{}{base}{TRACES_PATH}",
        uri.authority().expect("checked above")
    )
    .parse()
    .map_err(|e| format!("{e}"))
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    outrigger_api::parse_duration(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::traces_uri;

    #[test]
    fn the_traces_path_goes_below_the_endpoint() {
        for (endpoint, uri) in [
            ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
            ("http://collector:4318/", "http://collector:4318/v1/traces"),
            ("http://gw/otlp/", "http://gw/otlp/v1/traces"),
        ] {
            assert_eq!(traces_uri(endpoint).unwrap().to_string(), uri);
        }
        for bad in [
            "collector:4318",
            "https://c:4318",
            "ftp://c",
            "/v1/traces",
            "http://c/?a=b",
        ] {
            assert!(traces_uri(bad).is_err(), "{bad}");
        }
    }
}
