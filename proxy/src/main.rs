//! `outrigger-proxy`: load the configuration, build the runtime, run until SIGTERM;
//! `outrigger-proxy init`: write the pod's iptables rules and exit.

use std::process::ExitCode;

use clap::Parser as _;
use outrigger_proxy::{Config, Proxy};
use tracing_subscriber::EnvFilter;

/// mimalloc rather than glibc's malloc: fewer instructions on every allocation of the
/// request path (proxy/Cargo.toml says why, and BENCHMARKS.md by how much).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // `init` needs none of the proxy's settings, and clap derive cannot make Config's
    // required ones optional only under a subcommand: dispatch on the first word.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|word| word == "init")
    {
        return outrigger_proxy::init::main(std::env::args_os().skip(1));
    }
    let config = match Config::try_parse() {
        Ok(config) => config,
        Err(error) if !error.use_stderr() => error.exit(), // --help, --version
        Err(error) => {
            eprintln!("error: {}", Config::explain(&error));
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        // Colour codes would end up in log files and log collectors.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();

    // One worker by default: a sidecar's share is a slice of one core.
    let runtime = if config.workers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(config.workers))
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let proxy = Proxy::bind(config).await?;
        proxy.run(shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// SIGTERM (Kubernetes, systemd) or Ctrl-C.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
