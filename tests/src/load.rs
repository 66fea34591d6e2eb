//! Many requests through a sidecar, some at once, and a tally of how they ended: the
//! resilience tests assert on these counts (never on times).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::client::{Http1, Reply};

/// One request to send: method, `Host`, path and extra headers.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    pub host: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Call {
    pub fn get(host: &str, path: &str) -> Call {
        Call::new("GET", host, path)
    }

    pub fn new(method: &str, host: &str, path: &str) -> Call {
        Call {
            method: method.to_string(),
            host: host.to_string(),
            path: path.to_string(),
            headers: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Call {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sends it on a new connection to `addr` (a connection the proxy closed after an
    /// error answer can never spoil the next request).
    pub async fn send(&self, addr: SocketAddr) -> Result<Reply, String> {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        Http1::connect(addr)
            .await?
            .send(&self.method, &self.host, &self.path, &headers)
            .await
    }
}

/// Sends `call` `total` times to `addr`, `concurrency` at a time; the replies in no
/// particular order.
pub async fn send_many(
    addr: SocketAddr,
    call: &Call,
    total: usize,
    concurrency: usize,
) -> Vec<Result<Reply, String>> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (call, next) = (call.clone(), next.clone());
            tokio::spawn(async move {
                let mut replies = Vec::new();
                while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < total {
                    replies.push(call.send(addr).await);
                }
                replies
            })
        })
        .collect();
    let mut replies = Vec::with_capacity(total);
    for worker in workers {
        replies.extend(worker.await.expect("request worker"));
    }
    replies
}

/// How one request ended: `"200"`, `"503"` (the app's), `"503 bulkhead-full"` (made by
/// the proxy, with its `outrigger-error`), or `"transport: <error>"`.
pub fn outcome(reply: &Result<Reply, String>) -> String {
    match reply {
        Ok(r) => match r.mesh_error() {
            Some(code) => format!("{} {code}", r.status.as_u16()),
            None => r.status.as_u16().to_string(),
        },
        Err(e) => format!("transport: {e}"),
    }
}

/// How many requests ended each way.
pub fn tally(replies: &[Result<Reply, String>]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for reply in replies {
        *counts.entry(outcome(reply)).or_insert(0) += 1;
    }
    counts
}
