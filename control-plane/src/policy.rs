//! The policy directory: every `*.yaml`/`*.yml` file under it, read into the services,
//! traffic policies and server policies the control plane pushes.
//!
//! Every problem is reported, not only the first: each document's first parse error (a
//! parser stops there) and all the problems of its checks, then the problems across
//! documents (a `targetRef` naming no MeshService, duplicates). Each names the file, the
//! line and the field: `shop/payments.yaml:14: spec.retries.backoff.base: invalid duration`.

pub(crate) mod documents;
mod errors;
mod file_cache;
mod header;
mod invalid;
mod located;
mod mesh_service;
mod service_key;
mod strict;
mod tree;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use outrigger_api::{MeshService, ServerPolicy, ServerPolicySpec, ServiceView, TrafficPolicy};

pub use self::errors::{PolicyError, PolicyErrors};
pub use self::file_cache::FileCache;
pub use self::service_key::ServiceKey;

use self::header::Kind;
use self::invalid::Invalid;
use self::located::Located;

/// Directories nested deeper than this are not read: a symlink loop must not hang.
const MAX_DEPTH: usize = 16;

/// The configuration read from a policy dir: valid as a whole.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Policy {
    /// Sorted by namespace, then name, so that equal dirs give equal snapshots; each with
    /// its TrafficPolicy, if it has one, and its static endpoints.
    pub services: Vec<ServiceView>,
    /// The ServerPolicy of each service that has one.
    pub server_policies: BTreeMap<ServiceKey, ServerPolicySpec>,
}

impl Policy {
    pub fn service(&self, key: &ServiceKey) -> Option<&ServiceView> {
        self.services
            .binary_search_by(|s| (s.namespace.as_str(), s.name.as_str()).cmp(&key.as_pair()))
            .ok()
            .map(|i| &self.services[i])
    }
}

/// Reads every policy file under `dir` (recursively; hidden entries, such as the `..data`
/// links of a mounted Kubernetes ConfigMap, are skipped so files are not read twice).
pub fn load_dir(dir: &Path, trust_domain: &str) -> Result<Policy, PolicyErrors> {
    load_paths(&[dir.to_path_buf()], trust_domain)
}

/// Reads files and directories (as [`load_dir`] does) as one set: what `outrigger check`
/// validates. A file named directly is read whatever its extension.
pub fn load_paths(paths: &[PathBuf], trust_domain: &str) -> Result<Policy, PolicyErrors> {
    check_paths(paths, trust_domain).result
}

/// What `outrigger check` reports: how many files were read, and the outcome.
#[derive(Debug)]
pub struct CheckReport {
    pub files: usize,
    pub result: Result<Policy, PolicyErrors>,
}

/// [`load_paths`], also counting the files read.
pub fn check_paths(paths: &[PathBuf], trust_domain: &str) -> CheckReport {
    check_paths_cached(paths, trust_domain, &mut FileCache::default())
}

/// [`check_paths`], re-parsing only the files whose text is not in `cache` (which is
/// then updated): what a reload does, so that an edit costs the file edited, not the
/// whole mesh.
pub fn check_paths_cached(
    paths: &[PathBuf],
    trust_domain: &str,
    cache: &mut FileCache,
) -> CheckReport {
    let mut loader = Loader::new(trust_domain);
    let mut files = Vec::new();
    for path in paths {
        match fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                let mut found = Vec::new();
                collect_files(path, 0, &mut found, &mut loader);
                found.sort();
                files.extend(found);
            }
            Ok(_) => files.push(path.clone()),
            Err(e) => loader.io_error(path, &e),
        }
    }
    for path in &files {
        match fs::read_to_string(path) {
            Ok(text) => loader.merge(cache.parsed(path, text, trust_domain)),
            Err(e) => loader.io_error(path, &e),
        }
    }
    cache.keep_only(&files);
    CheckReport {
        files: files.len(),
        result: loader.finish(),
    }
}

/// Validates documents that do not come from files (the cluster's resources, rendered
/// in file form by their source), as one set, exactly as files are: `name` stands where
/// a file's path would in errors. Re-parses only the documents whose text is not in
/// `cache`, which then holds exactly these names.
pub fn check_documents(
    documents: &[(PathBuf, String)],
    trust_domain: &str,
    cache: &mut FileCache,
) -> Result<Policy, PolicyErrors> {
    let mut loader = Loader::new(trust_domain);
    let mut names = Vec::with_capacity(documents.len());
    for (name, text) in documents {
        loader.merge(cache.parsed(name, text.clone(), trust_domain));
        names.push(name.clone());
    }
    cache.keep_only(&names);
    loader.finish()
}

fn collect_files(dir: &Path, depth: usize, out: &mut Vec<PathBuf>, loader: &mut Loader) {
    if depth > MAX_DEPTH {
        return;
    }
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return loader.io_error(dir, &e),
    };
    for entry in entries {
        let path = match entry {
            Ok(entry) => entry.path(),
            Err(e) => {
                loader.io_error(dir, &e);
                continue;
            }
        };
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') {
            continue;
        }
        // metadata() follows symlinks: a linked file or dir counts as what it points to.
        match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => collect_files(&path, depth + 1, out, loader),
            Ok(meta) if meta.is_file() && (name.ends_with(".yaml") || name.ends_with(".yml")) => {
                out.push(path)
            }
            Ok(_) => {}
            // Deleted between listing and reading (an editor's temp file): not an error.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => loader.io_error(&path, &e),
        }
    }
}

/// Where a resource was defined, for errors that point at it from elsewhere.
#[derive(Clone, Debug)]
struct Origin {
    file: Arc<Path>,
    /// The document's first line: "defined at file:line".
    start: u64,
    /// The line of `metadata.name`, where a duplicate is reported.
    name_line: u64,
    /// The line of `spec.targetRef.name` (policies only).
    target_line: u64,
    /// The target as written, for policies.
    target: Option<ServiceKey>,
    /// A TrafficPolicy's backends as written: (field path, line, service in the policy's
    /// namespace), so that one naming no MeshService is reported where it is written.
    backends: Vec<(String, u64, ServiceKey)>,
}

impl Origin {
    fn at(&self) -> String {
        format!("{}:{}", self.file.display(), self.start)
    }
}

/// Accumulates documents file by file, then makes the checks that hold across them.
#[derive(Clone, Debug)]
pub struct Loader {
    trust_domain: String,
    errors: Vec<PolicyError>,
    services: Vec<(ServiceKey, Origin, ServiceView)>,
    traffic: Vec<(ServiceKey, Origin, TrafficPolicy)>,
    server: Vec<(ServiceKey, Origin, ServerPolicy)>,
    /// MeshServices whose document is broken but whose name could be read: policies that
    /// target them get no second, misleading error.
    broken_services: BTreeSet<ServiceKey>,
}

impl Loader {
    pub fn new(trust_domain: &str) -> Self {
        Loader {
            trust_domain: trust_domain.to_string(),
            errors: Vec::new(),
            services: Vec::new(),
            traffic: Vec::new(),
            server: Vec::new(),
            broken_services: BTreeSet::new(),
        }
    }

    /// A file or directory that could not be read.
    pub fn io_error(&mut self, path: &Path, e: &std::io::Error) {
        self.errors.push(PolicyError {
            file: path.to_path_buf(),
            line: None,
            field: None,
            message: format!("cannot read: {e}"),
        });
    }

    /// Adds what another loader read (one file's documents, from the cache).
    fn merge(&mut self, other: &Loader) {
        self.errors.extend(other.errors.iter().cloned());
        self.services.extend(other.services.iter().cloned());
        self.traffic.extend(other.traffic.iter().cloned());
        self.server.extend(other.server.iter().cloned());
        self.broken_services
            .extend(other.broken_services.iter().cloned());
    }

    /// Adds every document of one file; `path` names it in errors.
    pub fn add_file(&mut self, path: &Path, text: &str) {
        let file: Arc<Path> = Arc::from(path);
        for doc in documents::split(text) {
            self.add_document(&file, &doc);
        }
    }

    fn add_document(&mut self, file: &Arc<Path>, doc: &documents::Document<'_>) {
        let kind = match header::read(doc) {
            Ok(kind) => kind,
            Err(e) => return self.invalid(file, e),
        };
        let at = Located::new(doc);
        let origin = |target: Option<ServiceKey>| Origin {
            file: file.clone(),
            start: doc.first_content_line(),
            name_line: at.line("metadata.name"),
            target_line: at.line("spec.targetRef.name"),
            target,
            backends: Vec::new(),
        };
        let mut errors = Vec::new();
        match kind {
            Kind::MeshService => match strict::parse::<MeshService>(&at) {
                Ok(service) => {
                    let key = ServiceKey::of(&service.metadata);
                    let (view, problems) = mesh_service::check(service, &at, &self.trust_domain);
                    errors = problems;
                    self.services.push((key, origin(None), view));
                }
                Err(e) => {
                    errors.push(e);
                    if let Some(name) = at.scalar("metadata.name") {
                        let namespace = at
                            .scalar("metadata.namespace")
                            .unwrap_or_else(|| outrigger_api::DEFAULT_NAMESPACE.into());
                        self.broken_services
                            .insert(ServiceKey::new(namespace, name));
                    }
                }
            },
            Kind::TrafficPolicy => match strict::parse::<TrafficPolicy>(&at) {
                Ok(policy) => {
                    at.check_meta(&policy.metadata, &mut errors);
                    errors.extend(
                        policy
                            .spec
                            .validate()
                            .into_iter()
                            .map(|e| at.field_error(e)),
                    );
                    let key = ServiceKey::of(&policy.metadata);
                    let target = target_of(&policy.metadata.namespace, &policy.spec.target_ref);
                    let mut origin = origin(target);
                    origin.backends = backends_of(&policy, &at);
                    self.traffic.push((key, origin, policy));
                }
                Err(e) => errors.push(e),
            },
            Kind::ServerPolicy => match strict::parse::<ServerPolicy>(&at) {
                Ok(policy) => {
                    at.check_meta(&policy.metadata, &mut errors);
                    errors.extend(
                        policy
                            .spec
                            .validate(&self.trust_domain)
                            .into_iter()
                            .map(|e| at.field_error(e)),
                    );
                    let key = ServiceKey::of(&policy.metadata);
                    let target = target_of(&policy.metadata.namespace, &policy.spec.target_ref);
                    self.server.push((key, origin(target), policy));
                }
                Err(e) => errors.push(e),
            },
        }
        for e in errors {
            self.invalid(file, e);
        }
    }

    fn invalid(&mut self, file: &Arc<Path>, e: Invalid) {
        self.errors.push(PolicyError {
            file: file.to_path_buf(),
            line: Some(e.line),
            field: e.field,
            message: e.message,
        });
    }

    fn error_at(&mut self, origin: &Origin, line: u64, field: &str, message: String) {
        self.errors.push(PolicyError {
            file: origin.file.to_path_buf(),
            line: Some(line),
            field: Some(field.to_string()),
            message,
        });
    }

    /// The checks across documents, then the policy, or every error found, sorted by file
    /// and line.
    pub fn finish(mut self) -> Result<Policy, PolicyErrors> {
        let services = std::mem::take(&mut self.services);
        let mut by_key: BTreeMap<ServiceKey, (Origin, ServiceView)> = BTreeMap::new();
        for (key, origin, view) in services {
            if let Some((first, _)) = by_key.get(&key) {
                let message = format!("MeshService {key} is already defined at {}", first.at());
                self.error_at(&origin, origin.name_line, "metadata.name", message);
                continue;
            }
            by_key.insert(key, (origin, view));
        }

        let traffic = std::mem::take(&mut self.traffic);
        let mut traffic_by_target: BTreeMap<ServiceKey, (Origin, ServiceKey)> = BTreeMap::new();
        let mut traffic_names: BTreeMap<ServiceKey, Origin> = BTreeMap::new();
        for (key, origin, policy) in traffic {
            let Some(target) =
                self.resolve_target(&by_key, "TrafficPolicy", &key, &origin, &mut traffic_names)
            else {
                continue;
            };
            if let Some((first, first_key)) = traffic_by_target.get(&target) {
                let message = format!(
                    "MeshService {target} already has a TrafficPolicy: {first_key} at {}",
                    first.at()
                );
                self.error_at(&origin, origin.target_line, "spec.targetRef.name", message);
                continue;
            }
            for (field, line, backend) in &origin.backends {
                if !by_key.contains_key(backend) && !self.broken_services.contains(backend) {
                    let message = format!(
                        "no MeshService named {:?} in namespace {}",
                        backend.name, backend.namespace
                    );
                    self.error_at(&origin, *line, field, message);
                }
            }
            if let Some((_, view)) = by_key.get_mut(&target) {
                view.traffic_policy = Some(policy.spec);
            }
            traffic_by_target.insert(target, (origin, key));
        }

        let server = std::mem::take(&mut self.server);
        let mut server_by_target: BTreeMap<ServiceKey, (Origin, ServiceKey)> = BTreeMap::new();
        let mut server_names: BTreeMap<ServiceKey, Origin> = BTreeMap::new();
        let mut server_policies = BTreeMap::new();
        for (key, origin, policy) in server {
            let Some(target) =
                self.resolve_target(&by_key, "ServerPolicy", &key, &origin, &mut server_names)
            else {
                continue;
            };
            if let Some((first, first_key)) = server_by_target.get(&target) {
                let message = format!(
                    "MeshService {target} already has a ServerPolicy: {first_key} at {}",
                    first.at()
                );
                self.error_at(&origin, origin.target_line, "spec.targetRef.name", message);
                continue;
            }
            server_policies.insert(target.clone(), policy.spec);
            server_by_target.insert(target, (origin, key));
        }

        if !self.errors.is_empty() {
            let mut errors = self.errors;
            errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
            return Err(PolicyErrors(errors));
        }
        Ok(Policy {
            services: by_key.into_values().map(|(_, view)| view).collect(),
            server_policies,
        })
    }

    /// Checks a policy's name is unique among its kind and that its target exists;
    /// returns the target if the policy can be attached.
    fn resolve_target(
        &mut self,
        services: &BTreeMap<ServiceKey, (Origin, ServiceView)>,
        kind: &str,
        key: &ServiceKey,
        origin: &Origin,
        names: &mut BTreeMap<ServiceKey, Origin>,
    ) -> Option<ServiceKey> {
        if let Some(first) = names.get(key) {
            let message = format!("{kind} {key} is already defined at {}", first.at());
            self.error_at(origin, origin.name_line, "metadata.name", message);
            return None;
        }
        names.insert(key.clone(), origin.clone());
        // A wrong kind is reported by the policy's own checks.
        let target = origin.target.clone()?;
        if services.contains_key(&target) {
            return Some(target);
        }
        if !self.broken_services.contains(&target) {
            let message = format!(
                "no MeshService named {:?} in namespace {}",
                target.name, target.namespace
            );
            self.error_at(origin, origin.target_line, "spec.targetRef.name", message);
        }
        None
    }
}

/// A TrafficPolicy's backends (the policy's and its routes'), each with its field path
/// and line.
fn backends_of(policy: &TrafficPolicy, at: &Located<'_, '_>) -> Vec<(String, u64, ServiceKey)> {
    let namespace = &policy.metadata.namespace;
    let listed = policy
        .spec
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| (format!("spec.backends[{i}].service"), &b.service));
    let routed = policy
        .spec
        .routes
        .iter()
        .enumerate()
        .flat_map(|(r, route)| {
            route
                .backends
                .iter()
                .flatten()
                .enumerate()
                .map(move |(i, b)| {
                    (
                        format!("spec.routes[{r}].backends[{i}].service"),
                        &b.service,
                    )
                })
        });
    listed
        .chain(routed)
        .map(|(field, service)| {
            let line = at.line(&field);
            (
                field,
                line,
                ServiceKey::new(namespace.clone(), service.clone()),
            )
        })
        .collect()
}

/// The MeshService a policy in `namespace` targets, if its `targetRef` is of that kind.
fn target_of(namespace: &str, target: &outrigger_api::TargetRef) -> Option<ServiceKey> {
    (target.kind == outrigger_api::validate::TARGET_KIND)
        .then(|| ServiceKey::new(namespace.to_string(), target.name.clone()))
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod validation_tests;
