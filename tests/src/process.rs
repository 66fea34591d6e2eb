//! Child processes of the real binaries, with their logs kept in a file and printed when
//! a test fails, and killed when dropped.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Upper bound for a process to become ready; only a broken build waits this long.
pub const START_LIMIT: Duration = Duration::from_secs(30);

/// Path of a workspace binary, built next to this test binary by `cargo test --workspace`
/// (or beside this program, for the harness's own binaries).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let here = exe.parent().expect("a binary lives in a directory");
    // target/<profile>/deps/<test> → target/<profile>/<name>; a harness program already
    // lives in target/<profile>.
    let dir = if here.ends_with("deps") {
        here.parent().expect("target/<profile>/deps has a parent")
    } else {
        here
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (it builds the binaries), \
         or `cargo build --bins` first",
        path.display()
    );
    path
}

/// A loopback port for a process the test starts. Taken from 20000..32000, below the
/// kernel's ephemeral range (32768 and up by default): a port the kernel handed out for
/// `:0` may be given again to any outgoing connection before the process binds it, which
/// made rare start-ups fail. A counter shared by the tests of this binary keeps them apart;
/// its start depends on the process id, so consecutive test binaries do not reuse ports
/// still in TIME_WAIT.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id() * 1_009) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}..{}", FIRST + SPAN);
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A running binary. Killed on drop; its log is printed if the test is failing.
pub struct Process {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    pub fn spawn(name: &str, mut command: Command, log_dir: &Path) -> Process {
        // Several processes may share a name (three instances of one service): each
        // keeps its own log.
        let log = (1..)
            .map(|i| match i {
                1 => log_dir.join(format!("{name}.log")),
                i => log_dir.join(format!("{name}-{i}.log")),
            })
            .find(|path| !path.exists())
            .expect("a free log file name");
        let file = File::create(&log).expect("create log file");
        command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone log handle"))
            .stderr(file);
        let chosen = command.get_envs().any(|(key, _)| key == "RUST_LOG");
        if !chosen && std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info,outrigger_proxy=debug");
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Process {
            name: name.to_string(),
            child: Some(child),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM (graceful drain).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {}", self.name);
    }

    /// Sends `signal` ("STOP", "CONT", ...) without waiting for its effect: SIGSTOP makes
    /// the process hang as a wedged one would, SIGCONT lets it go on.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {}", self.name);
    }

    /// Kills at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the process to exit by itself, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("----- log of {} -----\n{}", self.name, self.log());
        }
    }
}

/// Runs a binary to completion; [`crate::cli`] reads what it printed.
pub fn run(name: &str, args: &[&str]) -> Output {
    Command::new(bin(name))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {name}: {e}"))
}

/// Polls `check` until it is true, for at most `limit`. Not a timing assertion: the limit
/// only bounds how long a broken build hangs.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("gave up waiting for: {what}");
}
