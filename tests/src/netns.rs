//! Pods as network namespaces, for the tests of transparent interception: each pod is a
//! namespace (`ip netns add`) joined by a veth pair to a bridge in a namespace of its own,
//! with an address from 10.200.0.0/24 that exists only inside these namespaces. Nothing
//! is added to the host's own network. Everything is removed on drop, failing test or not.
//!
//! Where this cannot run (not root, no `ip`, `iptables` or `setpriv`, `ip netns add`
//! refused), [`Network::new`] prints one line `NETNS-SKIPPED: <why>` and the test returns.
//! When `OUTRIGGER_SKIP_FILE` is set (`.ci/run` sets it in CI), that line is also
//! appended to the file, so that CI fails rather than pass without the test.

use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The uid `outrigger-proxy init` excludes by default.
pub const PROXY_UID: u32 = 2102;
/// A uid for the app: anything but the proxy's (and not root, as apps rarely are).
pub const APP_UID: u32 = 1000;

/// A bridge namespace and the pods joined to it.
pub struct Network {
    prefix: String,
    namespaces: Vec<String>,
}

/// One pod: a network namespace with its own address.
#[derive(Clone, Debug)]
pub struct Pod {
    pub name: String,
    pub ip: Ipv4Addr,
}

impl Network {
    /// A new, empty network, or `None` (after printing why) where namespaces cannot be made.
    pub fn new() -> Option<Network> {
        if let Err(why) = preconditions() {
            skip(&why);
            return None;
        }
        // The process id keeps concurrent test binaries apart; the counter, the tests of
        // one binary.
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "or{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut network = Network {
            prefix,
            namespaces: Vec::new(),
        };
        let bridge = network.bridge();
        if let Err(why) = ip(&["netns", "add", &bridge]) {
            skip(&format!("`ip netns add` refused: {why}"));
            return None;
        }
        network.namespaces.push(bridge.clone());
        network.setup(&["-n", &bridge, "link", "add", "br0", "type", "bridge"]);
        network.setup(&["-n", &bridge, "link", "set", "br0", "up"]);
        Some(network)
    }

    fn bridge(&self) -> String {
        format!("{}-br", self.prefix)
    }

    /// Adds a pod: a namespace whose `eth0` is joined to the bridge, with the next address
    /// of 10.200.0.0/24, and loopback up.
    pub fn pod(&mut self, name: &str) -> Pod {
        let host = u8::try_from(self.namespaces.len()).expect("fewer than 255 pods");
        let ns = format!("{}-{name}", self.prefix);
        let bridge = self.bridge();
        let port = format!("veth{host}");
        let ip = Ipv4Addr::new(10, 200, 0, host);
        self.setup(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        self.setup(&[
            "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port, "netns",
            &bridge,
        ]);
        self.setup(&["-n", &bridge, "link", "set", &port, "master", "br0", "up"]);
        self.setup(&["-n", &ns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
        self.setup(&["-n", &ns, "link", "set", "eth0", "up"]);
        self.setup(&["-n", &ns, "link", "set", "lo", "up"]);
        Pod { name: ns, ip }
    }

    fn setup(&self, args: &[&str]) {
        if let Err(why) = ip(args) {
            panic!("ip {}: {why}", args.join(" "));
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Processes still inside (a listener of a failing test) would keep a namespace
        // alive after `ip netns del`: end them first, by their ids.
        for ns in self.namespaces.iter().rev() {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
            // Deleting a namespace deletes the veth ends inside it, and so their peers.
            if let Err(why) = ip(&["netns", "del", ns]) {
                eprintln!("could not remove network namespace {ns}: {why}");
            }
        }
    }
}

impl Pod {
    /// `program` run inside the pod, as root.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command.stdin(Stdio::null());
        command
    }

    /// `program` run inside the pod as `uid` (and the same gid, no supplementary groups),
    /// with no user account needed.
    pub fn command_as(&self, uid: u32, program: impl AsRef<OsStr>) -> Command {
        let mut command = self.command("setpriv");
        command
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={uid}"))
            .arg("--clear-groups")
            .arg(program);
        command
    }

    /// Runs `program args` inside the pod as root, to completion.
    pub fn run(&self, program: impl AsRef<OsStr>, args: &[&str]) -> Output {
        let program = program.as_ref();
        self.command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {} in {}: {e}", program.display(), self.name))
    }

    /// The pod's `nat` table as `iptables-save` lists it, without its comments and
    /// packet counters, which change on their own.
    pub fn nat_rules(&self, save: &str) -> String {
        let out = self.run(save, &["-t", "nat"]);
        assert!(out.status.success(), "{save} in {}: {out:?}", self.name);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| match l.split_once(" [") {
                Some((chain, _counters)) if l.starts_with(':') => chain.to_string(),
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Why namespaces cannot be made here, if they cannot.
fn preconditions() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1));
    if euid != Some("0") {
        return Err("not root (network namespaces and iptables need it)".into());
    }
    for program in ["ip", "iptables", "iptables-save", "setpriv"] {
        if which(program).is_none() {
            return Err(format!("`{program}` is not installed"));
        }
    }
    Ok(())
}

/// Where `program` is, in PATH or the sbin directories that hold `ip` and `iptables`.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn skip(why: &str) {
    crate::components::record_skip(&format!("NETNS-SKIPPED: {why}"));
}
