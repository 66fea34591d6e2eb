//! `outrigger inject -f FILE|-`: the manifests with the sidecar added, on stdout. A pod
//! that cannot be injected (host network) is written unchanged with one line on stderr;
//! input that is not Kubernetes YAML is one `error:` line and exit 1, with nothing on
//! stdout (a half-written manifest piped into `kubectl apply` would be worse).

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::ExitCode;

use outrigger_control_plane::inject::{InjectConfig, inject_manifests};

use crate::cli::InjectArgs;

pub(crate) fn run(args: InjectArgs) -> ExitCode {
    match inject(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn inject(args: &InjectArgs) -> Result<(), String> {
    let (text, source) = read(&args.file)?;
    let config = InjectConfig {
        control_plane: args.control_plane.clone(),
        proxy_image: args.proxy_image.clone(),
        ..InjectConfig::default()
    };
    let injected = inject_manifests(&text, &config).map_err(|e| format!("{source}: {e}"))?;
    for notice in &injected.notices {
        eprintln!("{source}: {notice}");
    }
    std::io::stdout()
        .write_all(injected.yaml.as_bytes())
        .map_err(|e| format!("cannot write to stdout: {e}"))
}

fn read(file: &Path) -> Result<(String, String), String> {
    if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        return Ok((text, "stdin".into()));
    }
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    Ok((text, file.display().to_string()))
}
