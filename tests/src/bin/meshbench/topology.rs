//! The topologies a run measures, each an entry point for the load and the processes
//! whose cost is read: the upstream alone (the baseline), and the same two hops through
//! Outrigger, HAProxy and nginx.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use outrigger_tests::{Mesh, Sidecar, free_port, loopback};

use crate::load::Target;
use crate::peers::{self, HopCerts, Peer, Wrappers};

/// One way from the load generator to the upstream.
pub(crate) struct Topology {
    pub(crate) name: &'static str,
    pub(crate) target: Target,
    /// The proxies on the way, by role: (role, pid).
    pub(crate) proxies: Vec<(&'static str, u32)>,
    /// What keeps them running (each stops when dropped).
    running: Running,
}

enum Running {
    Nothing,
    Outrigger(Box<(Mesh, Sidecar, Sidecar)>),
    Peers(Box<(Peer, Peer)>),
}

pub(crate) fn baseline(upstream: SocketAddr) -> Topology {
    Topology {
        name: "baseline",
        target: Target {
            addr: upstream,
            host: "upstream".into(),
        },
        proxies: Vec::new(),
        running: Running::Nothing,
    }
}

/// Outrigger with the control plane running and the default policy: client sidecar
/// (outbound) → mTLS, HTTP/2 → server sidecar (inbound) → upstream.
pub(crate) async fn outrigger(upstream: SocketAddr, wrappers: Wrappers<'_>) -> Topology {
    let inbound_port = free_port();
    let mut mesh = Mesh::new();
    mesh.add_service("bench", "server", "bench/server", &[loopback(inbound_port)]);
    mesh.start_control_plane().await;
    // Logging as in production: the harness's debug level would be measured too.
    let quiet = [("RUST_LOG", "warn")];
    let client = mesh.spawn_sidecar_under(
        &words(wrappers.outbound),
        "client",
        "bench/client",
        None,
        free_port(),
        &quiet,
    );
    let server = mesh.spawn_sidecar_under(
        &words(wrappers.inbound),
        "server",
        "bench/server",
        Some(upstream),
        inbound_port,
        &quiet,
    );
    client.wait_ready().await;
    server.wait_ready().await;
    Topology {
        name: "outrigger",
        target: Target {
            addr: client.outbound,
            host: "server.bench".into(),
        },
        proxies: vec![
            ("outbound", client.process.pid()),
            ("inbound", server.process.pid()),
        ],
        running: Running::Outrigger(Box::new((mesh, client, server))),
    }
}

pub(crate) fn haproxy(
    haproxy: &Path,
    dir: &Path,
    certs: &HopCerts,
    upstream: SocketAddr,
    wrappers: Wrappers<'_>,
) -> Topology {
    let (outbound, inbound) = peers::haproxy_pair(haproxy, dir, certs, upstream, wrappers);
    peer_topology("haproxy", outbound, inbound)
}

pub(crate) fn nginx(
    nginx: &Path,
    dir: &Path,
    certs: &HopCerts,
    upstream: SocketAddr,
    wrappers: Wrappers<'_>,
) -> Topology {
    let (outbound, inbound) = peers::nginx_pair(nginx, dir, certs, upstream, wrappers);
    peer_topology("nginx", outbound, inbound)
}

fn peer_topology(name: &'static str, outbound: Peer, inbound: Peer) -> Topology {
    Topology {
        name,
        target: Target {
            addr: outbound.addr,
            host: "upstream".into(),
        },
        proxies: vec![
            ("outbound", outbound.process.pid()),
            ("inbound", inbound.process.pid()),
        ],
        running: Running::Peers(Box::new((outbound, inbound))),
    }
}

impl Topology {
    /// The proxy processes, outbound first.
    fn processes(&mut self) -> Vec<&mut outrigger_tests::Process> {
        match &mut self.running {
            Running::Nothing => Vec::new(),
            Running::Outrigger(running) => {
                let (_, client, server) = &mut **running;
                vec![&mut client.process, &mut server.process]
            }
            Running::Peers(running) => {
                let (outbound, inbound) = &mut **running;
                vec![&mut outbound.process, &mut inbound.process]
            }
        }
    }

    /// Stops the proxies with SIGTERM and waits for them to exit (a program under
    /// callgrind writes its counts as it exits).
    pub(crate) fn stop(&mut self) {
        for process in self.processes() {
            process.terminate();
            if process.wait_exit(Duration::from_secs(60)).is_none() {
                eprintln!("a proxy did not exit within 60 s of SIGTERM");
            }
        }
    }

    /// The last lines of each proxy's log: why requests failed.
    pub(crate) fn logs(&self) -> String {
        let processes: Vec<&outrigger_tests::Process> = match &self.running {
            Running::Nothing => Vec::new(),
            Running::Outrigger(running) => vec![&running.1.process, &running.2.process],
            Running::Peers(running) => vec![&running.0.process, &running.1.process],
        };
        processes
            .iter()
            .map(|p| {
                let log = p.log();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            })
            .collect::<Vec<_>>()
            .join("\n---\n")
    }
}

fn words(wrapper: &[String]) -> Vec<&str> {
    wrapper.iter().map(String::as_str).collect()
}

/// How long a sidecar takes from its start to `/ready` (certificate and config held),
/// polled every millisecond, for a sidecar of `mesh`.
pub(crate) async fn start_to_ready(mesh: &Mesh) -> Duration {
    let started = Instant::now();
    let sidecar = mesh.spawn_sidecar(
        "probe",
        "bench/probe",
        None,
        free_port(),
        &[("RUST_LOG", "warn")],
    );
    loop {
        if ready(sidecar.admin).await {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the probe sidecar never became ready"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn ready(admin: SocketAddr) -> bool {
    matches!(
        outrigger_tests::get_h1(admin, "localhost", "/ready").await,
        Ok(reply) if reply.status == 200
    )
}
