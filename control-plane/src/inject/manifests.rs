//! `outrigger inject`: multi-document YAML in, the same documents out with every pod
//! template injected. Kinds that hold no pod pass through as their original text, byte
//! for byte; a document that is not a Kubernetes object, or a known kind at an
//! apiVersion this code does not know, is one error naming the document.

use std::fmt;

use serde_json::Value;

use super::pod::{Outcome, inject_pod};
use super::{InjectConfig, InjectError};
use crate::policy::documents;

/// The output, and what was left out on purpose.
#[derive(Debug)]
pub struct InjectedManifests {
    pub yaml: String,
    /// Pods left uninjected for a reason the user must hear (host network).
    pub notices: Vec<Notice>,
}

/// A pod not injected, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// Such as `document 2 (Deployment shop/web)`.
    pub document: String,
    pub reason: String,
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: not injected: {}", self.document, self.reason)
    }
}

/// The input could not be injected; nothing should be written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{document}: {message}")]
pub struct ManifestError {
    pub document: String,
    pub message: String,
}

/// Where each kind holds its pod template, and the apiVersion it must have.
fn template_path(kind: &str) -> Option<(&'static str, &'static [&'static str])> {
    Some(match kind {
        "Pod" => ("v1", &[]),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => {
            ("apps/v1", &["spec", "template"])
        }
        "Job" => ("batch/v1", &["spec", "template"]),
        "CronJob" => ("batch/v1", &["spec", "jobTemplate", "spec", "template"]),
        "List" => ("v1", &[]),
        _ => return None,
    })
}

/// Injects every pod in `text` (one or more YAML documents).
pub fn inject_manifests(
    text: &str,
    config: &InjectConfig,
) -> Result<InjectedManifests, ManifestError> {
    let mut out = Vec::new();
    let mut notices = Vec::new();
    for (index, doc) in documents::split(text).iter().enumerate() {
        let mut name = format!("document {}", index + 1);
        let mut value: Value = serde_saphyr::from_str(doc.text).map_err(|e| ManifestError {
            document: name.clone(),
            message: format!("not YAML: {e}"),
        })?;
        name = describe(&name, &value)?;
        if inject_object(&mut value, &name, config, &mut notices)? {
            let yaml = serde_saphyr::to_string(&value).map_err(|e| ManifestError {
                document: name.clone(),
                message: format!("cannot write it back as YAML: {e}"),
            })?;
            out.push(yaml);
        } else {
            out.push(doc.text.to_string());
        }
    }
    let mut yaml = String::new();
    for (index, doc) in out.iter().enumerate() {
        if index > 0 {
            yaml.push_str("---\n");
        }
        yaml.push_str(doc);
        if !doc.ends_with('\n') {
            yaml.push('\n');
        }
    }
    Ok(InjectedManifests { yaml, notices })
}

/// `document 2 (Deployment shop/web)`, once it is known to be a Kubernetes object.
fn describe(prefix: &str, value: &Value) -> Result<String, ManifestError> {
    let kind = value.get("kind").and_then(Value::as_str);
    let api_version = value.get("apiVersion").and_then(Value::as_str);
    let (Some(kind), Some(_)) = (kind, api_version) else {
        return Err(ManifestError {
            document: prefix.to_string(),
            message: "not a Kubernetes object (a mapping with apiVersion and kind)".into(),
        });
    };
    let meta = value.get("metadata");
    let field = |key: &str| meta.and_then(|m| m.get(key)).and_then(Value::as_str);
    let name = field("name").or(field("generateName")).unwrap_or("");
    Ok(match field("namespace") {
        Some(ns) => format!("{prefix} ({kind} {ns}/{name})"),
        None if name.is_empty() => format!("{prefix} ({kind})"),
        None => format!("{prefix} ({kind} {name})"),
    })
}

/// Injects the object's pods; whether anything changed.
fn inject_object(
    value: &mut Value,
    name: &str,
    config: &InjectConfig,
    notices: &mut Vec<Notice>,
) -> Result<bool, ManifestError> {
    let error = |message: String| ManifestError {
        document: name.to_string(),
        message,
    };
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let Some((expected, path)) = template_path(kind) else {
        return Ok(false);
    };
    if api_version != expected {
        return Err(error(format!(
            "apiVersion {api_version:?} is not supported for {kind} (expected {expected})"
        )));
    }
    if kind == "List" {
        let Some(items) = value.get_mut("items").and_then(Value::as_array_mut) else {
            return Err(error("items: missing, or not a list".into()));
        };
        let mut changed = false;
        for (index, item) in items.iter_mut().enumerate() {
            let item_name = describe(&format!("{name}, item {}", index + 1), item)?;
            changed |= inject_object(item, &item_name, config, notices)?;
        }
        return Ok(changed);
    }
    let mut template = &mut *value;
    for key in path {
        template = template
            .get_mut(*key)
            .ok_or_else(|| error(format!("{}: missing", path.join("."))))?;
    }
    let at = |e: InjectError| match path {
        [] => error(e.to_string()),
        _ => error(format!("{}: {e}", path.join("."))),
    };
    match inject_pod(template, config).map_err(at)? {
        Outcome::Injected => Ok(true),
        Outcome::AlreadyInjected | Outcome::Disabled => Ok(false),
        Outcome::Refused(reason) => {
            notices.push(Notice {
                document: name.to_string(),
                reason,
            });
            Ok(false)
        }
    }
}
