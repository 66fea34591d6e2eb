//! A mesh on loopback for one test: a CA in a temp dir, MeshService YAML, the real control
//! plane and real sidecars as child processes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cli::{path, stderr, stdout};
use crate::client::get_h1;
use crate::control_plane::ControlPlane;
use crate::fixtures::PAYMENTS_YAML;
use crate::process::{Process, bin, free_port, loopback, run};
use crate::sidecar::Sidecar;

pub struct Mesh {
    dir: tempfile::TempDir,
    pub cp_api: SocketAddr,
    pub cp_http: SocketAddr,
    cert_ttl: String,
    extra_args: Vec<String>,
    control_plane: Option<ControlPlane>,
}

impl Mesh {
    /// A fresh CA; the control plane starts with [`Mesh::start_control_plane`] once the
    /// services are written.
    pub fn new() -> Mesh {
        let dir = tempfile::tempdir().expect("temp dir");
        let mesh = Mesh {
            cp_api: loopback(free_port()),
            cp_http: loopback(free_port()),
            cert_ttl: "24h".to_string(),
            extra_args: Vec::new(),
            control_plane: None,
            dir,
        };
        std::fs::create_dir_all(mesh.policy_dir()).expect("policy dir");
        let out = run(
            "outrigger",
            &["ca", "init", "--data-dir", path(&mesh.data_dir())],
        );
        assert!(out.status.success(), "ca init: {}", stderr(&out));
        mesh
    }

    /// [`Mesh::new`] with `shop.yaml` in the policy dir: the payments MeshService
    /// ([`PAYMENTS_YAML`]).
    pub fn with_payments() -> Mesh {
        let mesh = Mesh::new();
        mesh.write_policy("shop.yaml", PAYMENTS_YAML);
        mesh
    }

    /// Workload certificates of this lifetime (e.g. "4s" to watch rotations).
    pub fn cert_ttl(mut self, ttl: &str) -> Mesh {
        self.cert_ttl = ttl.to_string();
        self
    }

    /// More flags for `outrigger control-plane` (e.g. `--registration-ttl 2s`).
    pub fn control_plane_args(mut self, args: &[&str]) -> Mesh {
        self.extra_args = args.iter().map(|a| a.to_string()).collect();
        self
    }

    /// The control plane's `/api/status`, as JSON.
    pub async fn status(&self) -> serde_json::Value {
        get_h1(self.cp_http, "localhost", "/api/status")
            .await
            .expect("GET /api/status")
            .json()
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }
    pub fn data_dir(&self) -> PathBuf {
        self.root().join("data")
    }
    pub fn policy_dir(&self) -> PathBuf {
        self.root().join("policy")
    }
    pub fn trust_anchor(&self) -> PathBuf {
        self.data_dir().join("ca").join("trust-anchor.pem")
    }
    /// The trust anchor file's PEM text.
    pub fn anchor_pem(&self) -> String {
        std::fs::read_to_string(self.trust_anchor()).expect("trust anchor")
    }

    /// Writes a MeshService whose instances present `identity` ("ns/sa").
    pub fn add_service(
        &self,
        namespace: &str,
        name: &str,
        identity: &str,
        endpoints: &[SocketAddr],
    ) {
        let endpoints: String = endpoints
            .iter()
            .map(|e| format!("    - address: {e}\n"))
            .collect();
        let (ns, sa) = identity.split_once('/').expect("identity as ns/sa");
        let yaml = format!(
            "apiVersion: outrigger.dev/v1alpha1\nkind: MeshService\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n  identity: spiffe://cluster.local/ns/{ns}/sa/{sa}\n  protocol: http\n  endpoints:\n{endpoints}"
        );
        let path = self.policy_dir().join(format!("{namespace}-{name}.yaml"));
        std::fs::write(path, yaml).expect("write MeshService");
    }

    /// Writes (or replaces) a policy file; `yaml` is the whole file.
    pub fn write_policy(&self, file: &str, yaml: &str) {
        write_atomically(&self.policy_dir().join(file), yaml);
    }

    /// Writes (or replaces) the TrafficPolicy of `name.namespace`; `spec` is the YAML under
    /// `spec:` after `targetRef`, each line indented by two spaces.
    pub fn traffic_policy(&self, namespace: &str, name: &str, spec: &str) {
        self.write_policy(
            &format!("{namespace}-{name}-traffic.yaml"),
            &policy_yaml("TrafficPolicy", namespace, name, spec),
        );
    }

    /// Writes (or replaces) the ServerPolicy of `name.namespace`, as
    /// [`Mesh::traffic_policy`] does.
    pub fn server_policy(&self, namespace: &str, name: &str, spec: &str) {
        self.write_policy(
            &format!("{namespace}-{name}-server.yaml"),
            &policy_yaml("ServerPolicy", namespace, name, spec),
        );
    }

    /// Starts the control plane on [`Mesh::cp_api`] and [`Mesh::cp_http`] (the same
    /// ports after a restart), with the mesh's certificate lifetime and flags.
    pub async fn start_control_plane(&mut self) {
        let mut flags = vec!["--cert-ttl".to_string(), self.cert_ttl.clone()];
        flags.extend(self.extra_args.iter().cloned());
        // Tests that restart a control plane with registered instances ask for a warm-up.
        if !self.extra_args.iter().any(|a| a == "--registration-warmup") {
            flags.extend(["--registration-warmup".to_string(), "0s".to_string()]);
        }
        let control_plane = ControlPlane::start_on(self, self.cp_api, self.cp_http, &flags).await;
        self.control_plane = Some(control_plane);
    }

    /// What the control plane has logged so far.
    pub fn control_plane_log(&self) -> String {
        self.control_plane
            .as_ref()
            .map(|cp| cp.log())
            .unwrap_or_default()
    }

    /// Kills the control plane at once, as a crash would.
    pub fn kill_control_plane(&mut self) {
        if let Some(mut cp) = self.control_plane.take() {
            cp.kill();
        }
    }

    /// A bootstrap token for "ns/sa" from `outrigger token create`, whose stdout must be
    /// the token alone.
    pub fn token(&self, identity: &str) -> String {
        let out = run(
            "outrigger",
            &[
                "token",
                "create",
                "--data-dir",
                path(&self.data_dir()),
                "--identity",
                identity,
            ],
        );
        assert!(out.status.success(), "token create: {}", stderr(&out));
        let token = stdout(&out);
        assert_eq!(
            token.trim_end().lines().count(),
            1,
            "only the token: {token:?}"
        );
        token.trim_end().to_string()
    }

    /// A bootstrap token for "ns/sa", in a file, as a sidecar is given it.
    pub fn token_file(&self, identity: &str) -> PathBuf {
        let token = self.token(identity);
        // One file per call: a sidecar still starting must never read a half-written one.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self
            .root()
            .join(format!("token-{}-{n}", identity.replace('/', "-")));
        std::fs::write(&path, token).expect("write token");
        path
    }

    /// Starts a sidecar with a token for `identity` ("ns/sa") and waits until it is ready.
    pub async fn sidecar(
        &self,
        name: &str,
        identity: &str,
        app: Option<SocketAddr>,
        inbound_port: u16,
    ) -> Sidecar {
        let sidecar = self.spawn_sidecar(name, identity, app, inbound_port, &[]);
        sidecar.wait_ready().await;
        sidecar
    }

    /// Starts a sidecar without waiting; `env` adds or overrides variables.
    pub fn spawn_sidecar(
        &self,
        name: &str,
        identity: &str,
        app: Option<SocketAddr>,
        inbound_port: u16,
        env: &[(&str, &str)],
    ) -> Sidecar {
        self.spawn_sidecar_under(&[], name, identity, app, inbound_port, env)
    }

    /// [`Mesh::spawn_sidecar`], run by `wrapper` (a program and its arguments, the
    /// proxy's path appended: `["valgrind", "--tool=callgrind"]`); empty for none.
    pub fn spawn_sidecar_under(
        &self,
        wrapper: &[&str],
        name: &str,
        identity: &str,
        app: Option<SocketAddr>,
        inbound_port: u16,
        env: &[(&str, &str)],
    ) -> Sidecar {
        let (outbound, admin) = (loopback(free_port()), loopback(free_port()));
        let inbound = loopback(inbound_port);
        let proxy = bin("outrigger-proxy");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&proxy);
                command
            }
            None => Command::new(&proxy),
        };
        command
            .env("OUTRIGGER_CONTROL_PLANE", self.cp_api.to_string())
            .env("OUTRIGGER_TRUST_ANCHORS", self.trust_anchor())
            .env("OUTRIGGER_TOKEN_FILE", self.token_file(identity))
            .env("OUTRIGGER_SERVICE", name)
            .env("OUTRIGGER_INBOUND_ADDR", inbound.to_string())
            .env("OUTRIGGER_OUTBOUND_ADDR", outbound.to_string())
            .env("OUTRIGGER_ADMIN_ADDR", admin.to_string());
        if let Some(app) = app {
            command.env("OUTRIGGER_APP_ADDR", app.to_string());
        }
        for (key, value) in env {
            command.env(key, value);
        }
        Sidecar {
            process: Process::spawn(&format!("sidecar-{name}"), command, self.root()),
            inbound,
            outbound,
            admin,
        }
    }
}

/// Replaces a file as editors and ConfigMap updates do, so that a reload never sees half
/// a file: write a temp file beside it, then rename.
pub fn write_atomically(file: &Path, text: &str) {
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a file name");
    let tmp = file.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).expect("write temp file");
    std::fs::rename(&tmp, file).expect("rename over the file");
}

fn policy_yaml(kind: &str, namespace: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: outrigger.dev/v1alpha1\nkind: {kind}\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  targetRef: {{kind: MeshService, name: {name}}}\n{spec}"
    )
}

impl Default for Mesh {
    fn default() -> Self {
        Self::new()
    }
}
