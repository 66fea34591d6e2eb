//! An [`crate::EchoApp`] in a child process (the `echo-app` program), for tests that
//! crash or wedge an app apart from its sidecar: it can be killed, stopped and continued,
//! started again on the same port, and told which fault to inject.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::client::Http1;
use crate::faults::Fault;
use crate::process::{Process, START_LIMIT, bin, eventually, free_port, loopback};

pub struct AppProcess {
    pub name: String,
    /// Where it answers (its sidecar's `OUTRIGGER_APP_ADDR`).
    pub addr: SocketAddr,
    /// Where it takes `PUT /fault`.
    pub control: SocketAddr,
    log_dir: PathBuf,
    pub process: Process,
}

impl AppProcess {
    /// Starts on free loopback ports, its log in `log_dir`; returns once it answers.
    pub async fn start(name: &str, log_dir: &Path) -> AppProcess {
        let (addr, control) = (loopback(free_port()), loopback(free_port()));
        let process = spawn(name, addr, control, log_dir);
        let app = AppProcess {
            name: name.to_string(),
            addr,
            control,
            log_dir: log_dir.to_path_buf(),
            process,
        };
        app.wait_answering().await;
        app
    }

    /// Starts it again on the same ports (after a kill); returns once it answers.
    pub async fn restart(&mut self) {
        self.process.kill();
        self.process = spawn(&self.name, self.addr, self.control, &self.log_dir);
        self.wait_answering().await;
    }

    /// Injects `fault` into every request from now on (`Fault::default()` heals).
    pub async fn set_fault(&self, fault: &Fault) {
        let mut headers: Vec<(&str, String)> = Vec::new();
        if let Some(status) = fault.status {
            headers.push(("x-fault-status", status.to_string()));
        }
        if let Some(rate) = fault.rate {
            headers.push(("x-fault-rate", rate.to_string()));
        }
        if let Some(delay) = fault.delay {
            headers.push(("x-fault-delay-ms", delay.as_millis().to_string()));
        }
        if fault.reset {
            headers.push(("x-fault-reset", "1".to_string()));
        }
        if fault.hang {
            headers.push(("x-fault-hang", "1".to_string()));
        }
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let reply = async {
            Http1::connect(self.control)
                .await?
                .send("PUT", "localhost", "/fault", &headers)
                .await
        }
        .await
        .unwrap_or_else(|e| panic!("set the fault of {}: {e}", self.name));
        assert_eq!(reply.status, 200, "PUT /fault: {}", reply.body);
    }

    async fn wait_answering(&self) {
        let addr = self.addr;
        eventually("the app answers", START_LIMIT, || async move {
            matches!(crate::client::get_h1(addr, "localhost", "/health").await, Ok(r) if r.status == 200)
        })
        .await;
    }
}

fn spawn(name: &str, addr: SocketAddr, control: SocketAddr, log_dir: &Path) -> Process {
    let mut command = Command::new(bin("echo-app"));
    command
        .arg("--name")
        .arg(name)
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--control")
        .arg(control.to_string());
    Process::spawn(&format!("app-{name}"), command, log_dir)
}
