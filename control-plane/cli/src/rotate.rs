//! `outrigger ca rotate start|issuer|finish`: the trust-anchor rotation's steps on disk
//! (`outrigger_certs::rotation`). A running control plane watches `ca/` and applies each
//! step itself; every step prints what it did and what to do next.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use outrigger_certs::rotation;

use crate::cli::RotateCommand;

pub(crate) fn run(step: RotateCommand) -> Result<(), String> {
    match step {
        RotateCommand::Start(args) => {
            let next = rotation::start(&args.data_dir).map_err(|e| e.to_string())?;
            println!(
                "next trust anchor and issuer created in {}",
                next.dir().display()
            );
            println!(
                "the trust bundle is now the current anchor plus the next one; a running control plane pushes it to every sidecar"
            );
            println!(
                "next: when `outrigger status` shows the mesh converged, run `outrigger ca rotate issuer`"
            );
        }
        RotateCommand::Issuer(args) => {
            let since = rotation::move_issuer(&args.data_dir).map_err(|e| e.to_string())?;
            println!(
                "new certificates are signed under the next trust anchor (since {})",
                unix_time(since)
            );
            println!(
                "sidecars move to it when they renew (at 70% of their certificates' life); the control plane's own certificate moves at once"
            );
            let until = rotation::old_certificates_expire(since, Duration::from_secs(24 * 3600));
            println!(
                "next: once no certificate of the old issuer is valid (with the default 24h --cert-ttl, after {}), run `outrigger ca rotate finish`",
                unix_time(until)
            );
        }
        RotateCommand::Finish(args) => {
            rotation::finish(&args.data_dir, args.cert_ttl, args.force)
                .map_err(|e| e.to_string())?;
            let anchor = outrigger_certs::CaPaths::new(&args.data_dir).trust_anchor();
            println!(
                "the old trust anchor is gone: the bundle is the new anchor alone, in {}",
                anchor.display()
            );
            println!(
                "sidecars started from now on need that file (the same path as before, new content)"
            );
        }
    }
    Ok(())
}

/// Unix seconds, with how long ago (or ahead) that is: no date crate for one line.
fn unix_time(secs: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    let ago = SystemTime::now().duration_since(at).map(|d| d.as_secs());
    match ago {
        Ok(ago) => format!("unix time {secs}, {ago}s ago"),
        Err(e) => format!("unix time {secs}, in {}s", e.duration().as_secs()),
    }
}
