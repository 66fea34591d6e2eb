//! The real `outrigger control-plane` as a child process of a test: started on a mesh's
//! CA and policy dir, ready once `/ready` answers, and what tests ask of it (its plain-HTTP
//! port, its log, SIGTERM).

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::process::{Command, ExitStatus};

use crate::client::get_h1;
use crate::mesh::Mesh;
use crate::process::{Process, START_LIMIT, bin, eventually, free_port, loopback};

/// A running control plane; killed on drop, its log printed if the test is failing.
pub struct ControlPlane {
    process: Process,
    /// The API (TLS): certificates, watch, register.
    pub api: SocketAddr,
    /// Plain HTTP: `/ready`, `/metrics`, `/api/status`.
    pub http: SocketAddr,
}

impl ControlPlane {
    /// Starts on fresh ports and returns once `/ready` answers 200.
    pub async fn start(mesh: &Mesh) -> ControlPlane {
        ControlPlane::start_with(mesh, &[]).await
    }

    /// [`ControlPlane::start`] with more flags (e.g. `--registration-ttl 300ms`).
    pub async fn start_with(mesh: &Mesh, flags: &[&str]) -> ControlPlane {
        ControlPlane::start_on(mesh, loopback(free_port()), loopback(free_port()), flags).await
    }

    /// Starts on the given ports: a control plane restarted under running sidecars must
    /// come back where they look for it.
    pub async fn start_on<S: AsRef<OsStr>>(
        mesh: &Mesh,
        api: SocketAddr,
        http: SocketAddr,
        flags: &[S],
    ) -> ControlPlane {
        ControlPlane::start_command(mesh, Command::new(bin("outrigger")), api, http, flags).await
    }

    /// [`ControlPlane::start_with`], started with a soft open-file limit of `soft` (as a
    /// shell's `ulimit -Sn` or systemd's default would leave it).
    pub async fn start_with_open_files(mesh: &Mesh, soft: u64, flags: &[&str]) -> ControlPlane {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -Sn {soft} && exec \"$0\" \"$@\""))
            .arg(bin("outrigger"));
        let (api, http) = (loopback(free_port()), loopback(free_port()));
        ControlPlane::start_command(mesh, command, api, http, flags).await
    }

    async fn start_command<S: AsRef<OsStr>>(
        mesh: &Mesh,
        mut command: Command,
        api: SocketAddr,
        http: SocketAddr,
        flags: &[S],
    ) -> ControlPlane {
        command
            .arg("control-plane")
            .arg("--data-dir")
            .arg(mesh.data_dir())
            .arg("--policy-dir")
            .arg(mesh.policy_dir())
            .arg("--listen")
            .arg(api.to_string())
            .arg("--http")
            .arg(http.to_string())
            .args(flags);
        let control_plane = ControlPlane {
            process: Process::spawn("control-plane", command, mesh.root()),
            api,
            http,
        };
        eventually("control plane ready", START_LIMIT, || async move {
            matches!(get_h1(http, "localhost", "/ready").await, Ok(r) if r.status == 200)
        })
        .await;
        control_plane
    }

    /// Everything it has written to stdout and stderr so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Its resident memory now, in KiB (`VmRSS` in /proc).
    pub fn rss_kib(&self) -> u64 {
        crate::procstat::rss(self.pid()) / 1024
    }

    /// Its soft and hard open-file limits now (`Max open files` in /proc).
    pub fn open_files_limits(&self) -> (String, String) {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.pid()))
            .expect("/proc/<pid>/limits");
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .expect("a Max open files line");
        let mut values = line["Max open files".len()..].split_whitespace();
        let soft = values.next().expect("soft").to_string();
        let hard = values.next().expect("hard").to_string();
        (soft, hard)
    }

    /// Its open file descriptors now.
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|dir| dir.count())
            .unwrap_or(0)
    }

    /// One sample's value from its `/metrics`, e.g.
    /// `outrigger_control_plane_watchers_cut_total{reason="stalled"}`; 0 when absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        let (_, text) = self.get_plain("/metrics").await;
        text.lines()
            .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// GET on the plain-HTTP port: (status, body).
    pub async fn get_plain(&self, path: &str) -> (u16, String) {
        let reply = get_h1(self.http, "localhost", path)
            .await
            .unwrap_or_else(|e| panic!("GET {path} from the control plane: {e}"));
        (reply.status.as_u16(), reply.body)
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.process.terminate();
        self.process
            .wait_exit(START_LIMIT)
            .expect("the control plane exits after SIGTERM")
    }

    /// Kills it at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}
