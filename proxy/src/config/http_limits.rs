//! The limits both HTTP listeners (inbound and outbound) put on what a client may send
//! (docs/security.md). Each one, when it refuses something, is counted in
//! `outrigger_http_refusals_total` and logged.

use std::time::Duration;

/// hyper's HTTP/1 parser keeps up to this many header fields on the stack; asking for
/// another count costs a heap allocation per request, so the default stays here.
pub(crate) const DEFAULT_MAX_HEADERS: u16 = 100;

#[derive(Clone, Debug, clap::Args)]
pub struct HttpLimits {
    /// An HTTP/1 client must send a request's whole head within this long, or the
    /// connection is closed (slowloris).
    #[arg(long, env = "OUTRIGGER_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = super::parse_duration)]
    pub header_read_timeout: Duration,

    /// The largest request head (HTTP/1, start line included) or header list (HTTP/2), in
    /// bytes, from 8 KiB; a larger one is answered 431.
    #[arg(long, env = "OUTRIGGER_MAX_HEADER_BYTES", default_value_t = 64 * 1024, value_parser = clap::value_parser!(u32).range(8192..=16 * 1024 * 1024))]
    pub max_header_bytes: u32,

    /// The most header fields an HTTP/1 request may carry; more is answered 431.
    #[arg(long, env = "OUTRIGGER_MAX_HEADERS", default_value_t = DEFAULT_MAX_HEADERS, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_headers: u16,

    /// Connections each listener (inbound, outbound) serves at once; one more is closed
    /// as soon as it is accepted.
    #[arg(long, env = "OUTRIGGER_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// HTTP/2 streams a client may have open at once on one connection.
    #[arg(long, env = "OUTRIGGER_MAX_CONCURRENT_STREAMS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_streams: u32,

    /// HTTP/2 streams a client may cancel before their answer, per connection, once at
    /// least half of its streams ended that way; then the connection is closed (rapid
    /// reset, CVE-2023-44487).
    #[arg(long, env = "OUTRIGGER_MAX_PREMATURE_RESETS", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_premature_resets: u32,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            max_headers: DEFAULT_MAX_HEADERS,
            max_connections: 10_000,
            max_concurrent_streams: 1024,
            max_premature_resets: 500,
        }
    }
}
