//! The demo's traffic and what it prints: requests from orders to payments through both
//! sidecars, their status codes, latency percentiles and the identities seen.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Where everything listens: [outbound, inbound, admin, app] for each service.
pub(crate) struct Sites {
    pub control_plane: SocketAddr,
    pub control_plane_http: SocketAddr,
    pub orders: [SocketAddr; 4],
    pub payments: [SocketAddr; 4],
}

/// What the traffic showed.
pub(crate) struct Traffic {
    statuses: BTreeMap<u16, usize>,
    mesh_errors: BTreeMap<String, usize>,
    latencies: Vec<Duration>,
    callers_seen: BTreeMap<String, usize>,
    server_identity: String,
}

/// Upper bound on waiting for the sidecars to hold a certificate and a config.
const READY_LIMIT: Duration = Duration::from_secs(20);

async fn get(
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> Result<(u16, Option<String>, Bytes), String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    send(&mut sender, host, path).await
}

async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    host: &str,
    path: &str,
) -> Result<(u16, Option<String>, Bytes), String> {
    let request = Request::get(path)
        .header(http::header::HOST, host)
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    sender.ready().await.map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let mesh_error = response
        .headers()
        .get("outrigger-error")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, mesh_error, body))
}

async fn wait_ready(admin: SocketAddr, name: &str) -> Result<(), String> {
    let deadline = Instant::now() + READY_LIMIT;
    loop {
        match get(admin, "localhost", "/ready").await {
            Ok((200, _, _)) => return Ok(()),
            Ok((_, _, body)) if Instant::now() > deadline => {
                return Err(format!(
                    "the {name} sidecar is not ready: {}",
                    String::from_utf8_lossy(&body).trim()
                ));
            }
            Err(error) if Instant::now() > deadline => {
                return Err(format!(
                    "the {name} sidecar's admin port does not answer: {error}"
                ));
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Waits for both sidecars, then sends `requests` from orders to payments.
pub(crate) async fn exercise(sites: &Sites, requests: usize) -> Result<Traffic, String> {
    wait_ready(sites.orders[2], "orders").await?;
    wait_ready(sites.payments[2], "payments").await?;
    let tcp = TcpStream::connect(sites.orders[0])
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut traffic = Traffic {
        statuses: BTreeMap::new(),
        mesh_errors: BTreeMap::new(),
        latencies: Vec::with_capacity(requests),
        callers_seen: BTreeMap::new(),
        server_identity: String::new(),
    };
    for _ in 0..requests {
        let start = Instant::now();
        let (status, mesh_error, body) = send(&mut sender, "payments.demo", "/charge").await?;
        traffic.latencies.push(start.elapsed());
        *traffic.statuses.entry(status).or_default() += 1;
        if let Some(code) = mesh_error {
            *traffic.mesh_errors.entry(code).or_default() += 1;
        } else if let Ok(seen) = serde_json::from_slice::<serde_json::Value>(&body) {
            let caller = seen["caller"].as_str().unwrap_or("?").to_string();
            *traffic.callers_seen.entry(caller).or_default() += 1;
        }
    }
    // What the orders sidecar enforces for payments: the identity it verified.
    let (_, _, config) = get(sites.orders[2], "localhost", "/config").await?;
    let config: serde_json::Value = serde_json::from_slice(&config).unwrap_or_default();
    if let Some(payments) = config["services"]
        .as_array()
        .and_then(|services| services.iter().find(|s| s["name"] == "payments"))
    {
        traffic.server_identity = payments["identity"]
            .as_str()
            .unwrap_or_default()
            .to_string();
    }
    Ok(traffic)
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

pub(crate) fn print(sites: &Sites, traffic: &Traffic, dir: &Path, once: bool) {
    let [o_out, o_in, o_admin, o_app] = sites.orders;
    let [p_out, p_in, p_admin, p_app] = sites.payments;
    println!(
        "Outrigger demo: a control plane and two services, each behind its own sidecar, on loopback.\n"
    );
    println!(
        "  control plane  API https://{}   health and metrics http://{}",
        sites.control_plane, sites.control_plane_http
    );
    println!(
        "  orders         app {o_app}   sidecar outbound {o_out}  inbound {o_in}  admin {o_admin}"
    );
    println!(
        "  payments       app {p_app}   sidecar outbound {p_out}  inbound {p_in}  admin {p_admin}"
    );
    println!(
        "  CA, tokens and policy in {} (removed on exit)\n",
        dir.display()
    );

    let total: usize = traffic.statuses.values().sum();
    println!(
        "Sent {total} requests orders → payments (HTTP/1.1 from the app, mTLS HTTP/2 between the sidecars):"
    );
    for (status, count) in &traffic.statuses {
        println!("  status {status}: {count}");
    }
    for (code, count) in &traffic.mesh_errors {
        println!("  mesh error {code}: {count}");
    }
    let mut sorted = traffic.latencies.clone();
    sorted.sort();
    println!(
        "  latency through both sidecars: p50 {}  p90 {}  p99 {}  max {}",
        ms(quantile(&sorted, 0.5)),
        ms(quantile(&sorted, 0.9)),
        ms(quantile(&sorted, 0.99)),
        ms(sorted.last().copied().unwrap_or_default())
    );
    for (caller, count) in &traffic.callers_seen {
        println!("  payments saw the caller as {caller} ({count} requests)");
    }
    if !traffic.server_identity.is_empty() {
        println!(
            "  orders' sidecar verified the server as {}",
            traffic.server_identity
        );
    }
    if once {
        return;
    }
    println!("\nTry it:");
    println!(
        "  curl -H 'Host: payments.demo' http://{o_out}/hello      # orders' sidecar → payments"
    );
    println!(
        "  curl http://{o_app}/checkout                           # orders app calls payments through its sidecar"
    );
    println!(
        "  curl -H 'Host: nowhere.demo' -i http://{o_out}/          # a mesh error: unknown-service"
    );
    println!("  curl http://{o_admin}/metrics | grep outrigger_requests_total");
    println!("  curl http://{o_admin}/config");
    println!("  curl http://{}/metrics", sites.control_plane_http);
    println!("\nCtrl-C to stop.");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&sorted, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&sorted, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&sorted, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
