//! Injecting one pod: a Pod object, or a workload's pod template (both are `{metadata,
//! spec}` with a PodSpec). The decisions (disabled, already injected, host network) and
//! the change itself, the same for the CLI and the webhook.

use serde_json::{Map, Value};

use super::annotations::{self, ANNOTATION_SERVICE, InjectChoice, Overrides};
use super::sidecar::{self, INIT_CONTAINER, PROXY_CONTAINER, PodFacts};
use super::{InjectConfig, InjectError};

/// What injection did to a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Injected,
    /// It already has the proxy: nothing changed (injecting twice is harmless).
    AlreadyInjected,
    /// Annotated `outrigger.dev/inject: disabled`: nothing changed.
    Disabled,
    /// `hostNetwork: true`: iptables rules would redirect the node's traffic, so the pod
    /// is left as it is, with this reason.
    Refused(String),
}

/// Injects the pod-shaped `pod` (`{metadata, spec}`) in place; unchanged unless the
/// outcome is [`Outcome::Injected`].
pub fn inject_pod(pod: &mut Value, config: &InjectConfig) -> Result<Outcome, InjectError> {
    let empty = Map::new();
    let metadata = pod.get("metadata").and_then(Value::as_object);
    let annotations = metadata
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let labels = metadata
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    if annotations::inject_choice(annotations)? == InjectChoice::Disabled {
        return Ok(Outcome::Disabled);
    }
    let spec = pod
        .get("spec")
        .and_then(Value::as_object)
        .ok_or_else(|| spec_error("spec", "missing, or not a mapping"))?;
    if is_injected(spec) {
        return Ok(Outcome::AlreadyInjected);
    }
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        return Ok(Outcome::Refused(
            "it uses the host network (hostNetwork: true), where the proxy's iptables rules would redirect the node's own traffic"
                .into(),
        ));
    }
    let overrides = Overrides::read(annotations)?;
    let service = service_name(annotations, labels)?;
    let containers = array(spec, "containers")?
        .filter(|c| !c.is_empty())
        .ok_or_else(|| spec_error("spec.containers", "missing or empty"))?;
    let app_port = containers
        .first()
        .and_then(|c| c.get("ports"))
        .and_then(Value::as_array)
        .and_then(|ports| ports.first())
        .and_then(|p| p.get("containerPort"))
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok());
    array(spec, "initContainers")?;
    array(spec, "volumes")?;

    let facts = PodFacts {
        overrides: &overrides,
        service: service.as_deref(),
        app_port,
    };
    let added = sidecar::init_containers(config, &facts);
    let spec = pod
        .get_mut("spec")
        .and_then(Value::as_object_mut)
        .expect("checked to be a mapping above");
    // Ours first: the redirection must be in place, and the proxy ready, before the
    // pod's own init containers make their first call.
    let init = list_mut(spec, "initContainers");
    init.splice(0..0, added);
    list_mut(spec, "volumes").extend(sidecar::volumes());
    Ok(Outcome::Injected)
}

fn is_injected(spec: &Map<String, Value>) -> bool {
    ["initContainers", "containers"].iter().any(|list| {
        spec.get(*list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("name").and_then(Value::as_str))
            .any(|name| name == PROXY_CONTAINER || name == INIT_CONTAINER)
    })
}

/// The annotation, else the usual labels; the proxy registers its app under this name.
fn service_name(
    annotations: &Map<String, Value>,
    labels: &Map<String, Value>,
) -> Result<Option<String>, InjectError> {
    if let Some(value) = annotations.get(ANNOTATION_SERVICE) {
        return match value.as_str().map(str::trim) {
            Some(name) if !name.is_empty() => Ok(Some(name.to_string())),
            _ => Err(InjectError::Annotation {
                annotation: ANNOTATION_SERVICE,
                message: format!("{value} is not a service name"),
            }),
        };
    }
    Ok(["app.kubernetes.io/name", "app"]
        .iter()
        .find_map(|key| labels.get(*key).and_then(Value::as_str))
        .map(str::to_string))
}

/// The list at `spec.<key>`, if present; an error if it is something else.
fn array<'a>(
    spec: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a Vec<Value>>, InjectError> {
    match spec.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items)),
        Some(_) => Err(spec_error(&format!("spec.{key}"), "not a list")),
    }
}

/// The list at `key`, made if absent (callers have checked it is a list if present).
fn list_mut<'a>(spec: &'a mut Map<String, Value>, key: &str) -> &'a mut Vec<Value> {
    let slot = spec.entry(key).or_insert_with(|| Value::Array(Vec::new()));
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    slot.as_array_mut().expect("made a list above")
}

fn spec_error(field: &str, message: &str) -> InjectError {
    InjectError::Spec {
        field: field.to_string(),
        message: message.to_string(),
    }
}
