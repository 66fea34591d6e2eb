//! `outrigger stat [SERVICE] [--edges] [--window 1m] [--watch]`: the golden metrics of
//! `/api/stats` as a table. With `--watch` the table is redrawn in place every interval
//! until Ctrl-C; a control plane that stops answering is reported in place, and the
//! table comes back when it does.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;

use outrigger_api::MeshStats;
use outrigger_control_plane::stat_table::{self, StatView};

use crate::cli::StatArgs;
use crate::http_get::{authority, get_json};

/// Home and clear-screen: each refresh draws over the last one.
const REDRAW: &str = "\x1b[H\x1b[2J";

pub(crate) fn run(args: StatArgs) -> Result<ExitCode, String> {
    let addr = authority(&args.http);
    let path = format!("/api/stats?window={}", args.window);
    let view = StatView {
        service: args.service,
        edges: args.edges,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let ask = || async {
        get_json::<MeshStats>(&addr, &path)
            .await
            .map_err(|e| format!("cannot get stats from the control plane at {addr}: {e}"))
    };
    if !args.watch {
        let stats = runtime.block_on(ask())?;
        print!("{}", stat_table::render(&stats, &view));
        return Ok(ExitCode::SUCCESS);
    }
    runtime.block_on(async {
        let terminal = std::io::stdout().is_terminal();
        loop {
            let text = match ask().await {
                Ok(stats) => stat_table::render(&stats, &view),
                Err(e) => format!("{e}\n"),
            };
            let mut out = std::io::stdout().lock();
            // Not a terminal (a pipe, a log): one table after another, no escape codes.
            let redraw = if terminal { REDRAW } else { "" };
            let _ = write!(out, "{redraw}{text}");
            let _ = writeln!(
                out,
                "every {}; Ctrl-C to stop",
                outrigger_api::format_duration(args.interval)
            );
            let _ = out.flush();
            drop(out);
            tokio::select! {
                () = tokio::time::sleep(args.interval) => {}
                _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            }
        }
    })
}
