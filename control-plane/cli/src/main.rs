//! `outrigger`: initialise the CA, mint bootstrap tokens, run the control plane.
//! Every fatal error is one `error: ...` line on stderr and exit code 1.

mod check;
mod cli;
mod crds;
mod http_get;
mod inject;
mod rotate;
mod stat;
mod status;

use std::process::ExitCode;
use std::time::SystemTime;

use clap::Parser as _;
use outrigger_certs::SpiffeId;
use outrigger_control_plane::{ServeConfig, Server, TokenKey, ca_init, open_files, revocation};
use outrigger_demo as demo;

use crate::cli::{
    CaCommand, CaInitArgs, Cli, Command, DemoArgs, RevokeArgs, TokenCommand, TokenCreateArgs,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints its own report; its parts' logs would drown it unless asked for.
    let default_level = match cli.command {
        Command::Demo(_)
        | Command::Check(_)
        | Command::Status(_)
        | Command::Stat(_)
        | Command::Crds(_)
        | Command::Inject(_) => "warn",
        _ => "info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes would end up in log files and in the tests' parsing.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();

    let result = match cli.command {
        // Its own output and exit codes (1: invalid files).
        Command::Check(args) => return check::run(args),
        Command::Status(args) => match status::run(args) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        Command::Stat(args) => match stat::run(args) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        Command::Ca(CaCommand::Init(args)) => run_ca_init(args),
        Command::Ca(CaCommand::Rotate(step)) => rotate::run(step),
        Command::Token(TokenCommand::Create(args)) => run_token_create(args),
        Command::Revoke(args) => run_revoke(args),
        Command::ControlPlane(args) => run_control_plane(args.into_config()),
        Command::Demo(args) => run_demo(args),
        Command::Crds(args) => crds::run(args),
        // Its own exit codes and stderr lines (a refused pod is not a failure).
        Command::Inject(args) => return inject::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            // Several problems (policy files): one `error:` line each.
            for line in message.lines() {
                eprintln!("error: {line}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run_ca_init(args: CaInitArgs) -> Result<(), String> {
    let paths = ca_init::init(&args.data_dir, &args.trust_domain).map_err(|e| e.to_string())?;
    println!(
        "CA for trust domain {} created in {}",
        args.trust_domain,
        paths.dir().display()
    );
    println!(
        "trust anchor: {} (every sidecar needs this file)",
        paths.trust_anchor().display()
    );
    Ok(())
}

/// Prints the token alone, so that `TOKEN=$(outrigger token create ...)` works.
fn run_token_create(args: TokenCreateArgs) -> Result<(), String> {
    if args.ttl.is_zero() {
        return Err("--ttl must be more than 0".into());
    }
    let key = TokenKey::load(&args.data_dir).map_err(|e| e.to_string())?;
    let id = SpiffeId::from_short(key.trust_domain(), &args.identity)
        .map_err(|e| format!("--identity: {e}"))?;
    println!("{}", key.mint(&id, SystemTime::now() + args.ttl));
    Ok(())
}

fn run_revoke(args: RevokeArgs) -> Result<(), String> {
    let key = TokenKey::load(&args.data_dir).map_err(|e| e.to_string())?;
    let id = SpiffeId::from_short(key.trust_domain(), &args.identity)
        .map_err(|e| format!("--identity: {e}"))?;
    let now = outrigger_certs::unix_now();
    revocation::revoke_in(&args.data_dir, &id, now)?;
    println!(
        "revoked {id}: its tokens and certificates issued until Unix time {now} are refused \
         (a running control plane applies this at once); tokens created from the next second on work"
    );
    Ok(())
}

fn run_control_plane(config: ServeConfig) -> Result<(), String> {
    raise_open_files_limit(config.limits.max_connections);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        let server = Server::bind(config).await.map_err(|e| e.to_string())?;
        server
            .run(shutdown_signal())
            .await
            .map_err(|e| e.to_string())
    })
}

/// Every API connection is a file descriptor: the soft limit (often 1,024) goes up to the
/// hard one, and a hard limit below `--max-connections` is worth a warning.
fn raise_open_files_limit(max_connections: usize) {
    match open_files::raise_to_hard_limit() {
        Ok(raised) if raised.before != raised.after => tracing::info!(
            before = ?raised.before,
            after = ?raised.after,
            "raised the open-file limit"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
    // Descriptors besides connections: listeners, files, watchers, logs.
    const OTHER_FILES: u64 = 64;
    if let Some(limit) = open_files::soft_limit()
        && limit < max_connections as u64 + OTHER_FILES
    {
        tracing::warn!(
            limit,
            max_connections,
            "the open-file limit is below --max-connections: connections past it fail to be accepted"
        );
    }
}

fn run_demo(args: DemoArgs) -> Result<(), String> {
    let options = demo::DemoOptions {
        requests: args.requests,
        once: args.once,
        any_ports: args.any_ports,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime
        .block_on(demo::run(options, shutdown_signal()))
        .map_err(|e| e.to_string())
}

/// Completes on SIGTERM (Kubernetes, systemd) or Ctrl-C.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("shutdown signal received; draining");
}
