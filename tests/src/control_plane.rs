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
    /// The process id, to read its memory from /proc.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

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
        let mut command = Command::new(bin("outrigger"));
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
