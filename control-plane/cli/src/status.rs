//! `outrigger status`: asks the control plane's plain-HTTP port for `/api/status` and
//! prints it. Exit 0 if the mesh has converged, 2 if not, 1 if the control plane cannot
//! be asked (one `error:` line).

use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use outrigger_api::MeshStatus;
use outrigger_control_plane::status_report;

use crate::cli::StatusArgs;

/// Connecting and answering both fit in this, or the control plane is as good as down.
const TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) fn run(args: StatusArgs) -> Result<ExitCode, String> {
    let addr = args
        .http
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let status = runtime
        .block_on(async {
            tokio::time::timeout(TIMEOUT, fetch(&addr))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {TIMEOUT:?}")))
        })
        .map_err(|e| format!("cannot get the status from the control plane at {addr}: {e}"))?;
    let (text, converged) = status_report::render(&status);
    print!("{text}");
    Ok(if converged {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

async fn fetch(addr: &str) -> Result<MeshStatus, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request = Request::get("/api/status")
        .header(http::header::HOST, addr)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if status != StatusCode::OK {
        return Err(format!(
            "GET /api/status answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("GET /api/status: not a mesh status: {e}"))
}
