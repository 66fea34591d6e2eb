//! The policy directory: every `*.yaml`/`*.yml` file under it, read into the services the
//! control plane pushes. Issue #2 scope: MeshService is enforced; TrafficPolicy and
//! ServerPolicy are recognised and skipped until live policy (issue #3) enforces them.

mod documents;
mod header;
mod invalid;
mod mesh_service;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use outrigger_api::ServiceView;
use tracing::warn;

use self::header::Kind;

/// Directories nested deeper than this are not read: a symlink loop must not hang start-up.
const MAX_DEPTH: usize = 16;

/// The configuration read from a policy dir.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Policy {
    /// Sorted by namespace, then name, so that equal dirs give equal snapshots.
    pub services: Vec<ServiceView>,
}

/// Why a policy dir could not be loaded. Each names the file (and line) to fix.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: u64,
        message: String,
    },
}

/// Reads every policy file under `dir` (recursively; hidden entries, such as the `..data`
/// links of a mounted Kubernetes ConfigMap, are skipped so files are not read twice).
pub fn load_dir(dir: &Path, trust_domain: &str) -> Result<Policy, PolicyError> {
    let mut files = Vec::new();
    collect_files(dir, 0, &mut files)?;
    files.sort();
    let mut loader = Loader::new(trust_domain);
    for path in files {
        let text = fs::read_to_string(&path).map_err(|source| PolicyError::Io {
            path: path.clone(),
            source,
        })?;
        loader.add_file(&path, &text)?;
    }
    Ok(loader.finish())
}

fn collect_files(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), PolicyError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PolicyError::Io { path, source }
    };
    if depth > MAX_DEPTH {
        return Ok(());
    }
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') {
            continue;
        }
        // metadata() follows symlinks: a linked file or dir counts as what it points to.
        let meta = fs::metadata(&path).map_err(io(&path))?;
        if meta.is_dir() {
            collect_files(&path, depth + 1, out)?;
        } else if meta.is_file() && (name.ends_with(".yaml") || name.ends_with(".yml")) {
            out.push(path);
        }
    }
    Ok(())
}

/// Accumulates documents file by file; checks that hold across files (duplicates) too.
pub struct Loader {
    trust_domain: String,
    services: BTreeMap<(String, String), (ServiceView, String)>,
}

impl Loader {
    pub fn new(trust_domain: &str) -> Self {
        Loader {
            trust_domain: trust_domain.to_string(),
            services: BTreeMap::new(),
        }
    }

    /// Adds every document of one file; `path` is only used to name it in errors.
    pub fn add_file(&mut self, path: &Path, text: &str) -> Result<(), PolicyError> {
        let invalid = |e: invalid::Invalid| PolicyError::Invalid {
            path: path.to_path_buf(),
            line: e.line,
            message: e.message,
        };
        for doc in documents::split(text) {
            match header::read(&doc).map_err(invalid)? {
                Kind::MeshService => {
                    let service = mesh_service::parse(&doc, &self.trust_domain).map_err(invalid)?;
                    let here = format!("{}:{}", path.display(), doc.first_content_line());
                    let key = (service.namespace.clone(), service.name.clone());
                    if let Some((_, first)) = self.services.get(&key) {
                        return Err(invalid(invalid::Invalid {
                            line: doc.first_content_line(),
                            message: format!(
                                "MeshService {}/{} is already defined at {first}",
                                key.0, key.1
                            ),
                        }));
                    }
                    self.services.insert(key, (service, here));
                }
                kind @ (Kind::TrafficPolicy | Kind::ServerPolicy) => warn!(
                    "{}:{}: {kind:?} is accepted but not enforced yet (enforced from issue #3, live policy, on); skipped",
                    path.display(),
                    doc.first_content_line(),
                ),
            }
        }
        Ok(())
    }

    pub fn finish(self) -> Policy {
        Policy {
            services: self.services.into_values().map(|(s, _)| s).collect(),
        }
    }
}

#[cfg(test)]
mod tests;
