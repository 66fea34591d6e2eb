//! `outrigger status`: asks the control plane's plain-HTTP port for `/api/status` and
//! prints it. Exit 0 if the mesh has converged, 2 if not, 1 if the control plane cannot
//! be asked (one `error:` line).

use std::process::ExitCode;

use outrigger_api::MeshStatus;
use outrigger_control_plane::status_report;

use crate::cli::StatusArgs;
use crate::http_get::{authority, get_json};

pub(crate) fn run(args: StatusArgs) -> Result<ExitCode, String> {
    let addr = authority(&args.http);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let status: MeshStatus = runtime
        .block_on(get_json(&addr, "/api/status"))
        .map_err(|e| format!("cannot get the status from the control plane at {addr}: {e}"))?;
    let (text, converged) = status_report::render(&status);
    print!("{text}");
    Ok(if converged {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
