//! The pod annotations injection reads: opt in or out, and per-pod overrides of the
//! proxy's ports to skip, resources, log level and image. A bad value is an error naming
//! the annotation, never silently replaced by a default.

use serde_json::{Map, Value};

use super::InjectError;

/// `enabled` or `disabled` (on a pod, or a label on a namespace).
pub const ANNOTATION_INJECT: &str = "outrigger.dev/inject";
/// The MeshService the pod is an instance of (default: the `app.kubernetes.io/name`,
/// then the `app` label).
pub const ANNOTATION_SERVICE: &str = "outrigger.dev/service";
/// Inbound ports not redirected to the proxy, comma-separated (the admin port always is).
pub const ANNOTATION_SKIP_INBOUND_PORTS: &str = "outrigger.dev/skip-inbound-ports";
/// Outbound ports not redirected to the proxy, comma-separated.
pub const ANNOTATION_SKIP_OUTBOUND_PORTS: &str = "outrigger.dev/skip-outbound-ports";
/// The proxy's log filter (`RUST_LOG` syntax: `info`, `debug`, `outrigger_proxy=trace`).
pub const ANNOTATION_LOG_LEVEL: &str = "outrigger.dev/proxy-log-level";
/// The proxy image, replacing the configured one.
pub const ANNOTATION_PROXY_IMAGE: &str = "outrigger.dev/proxy-image";
pub const ANNOTATION_PROXY_CPU_REQUEST: &str = "outrigger.dev/proxy-cpu-request";
pub const ANNOTATION_PROXY_CPU_LIMIT: &str = "outrigger.dev/proxy-cpu-limit";
pub const ANNOTATION_PROXY_MEMORY_REQUEST: &str = "outrigger.dev/proxy-memory-request";
pub const ANNOTATION_PROXY_MEMORY_LIMIT: &str = "outrigger.dev/proxy-memory-limit";

/// What a pod's annotations change; `None` keeps the default.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Overrides {
    pub skip_inbound: Vec<u16>,
    pub skip_outbound: Vec<u16>,
    pub log_level: Option<String>,
    pub image: Option<String>,
    pub cpu_request: Option<String>,
    pub cpu_limit: Option<String>,
    pub memory_request: Option<String>,
    pub memory_limit: Option<String>,
}

/// What `outrigger.dev/inject` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum InjectChoice {
    Enabled,
    Disabled,
    Unset,
}

pub(super) fn inject_choice(annotations: &Map<String, Value>) -> Result<InjectChoice, InjectError> {
    match text(annotations, ANNOTATION_INJECT)? {
        None => Ok(InjectChoice::Unset),
        Some("enabled") => Ok(InjectChoice::Enabled),
        Some("disabled") => Ok(InjectChoice::Disabled),
        Some(other) => Err(bad(
            ANNOTATION_INJECT,
            format!("{other:?} (expected enabled or disabled)"),
        )),
    }
}

impl Overrides {
    pub(super) fn read(annotations: &Map<String, Value>) -> Result<Overrides, InjectError> {
        Ok(Overrides {
            skip_inbound: ports(annotations, ANNOTATION_SKIP_INBOUND_PORTS)?,
            skip_outbound: ports(annotations, ANNOTATION_SKIP_OUTBOUND_PORTS)?,
            log_level: non_empty(annotations, ANNOTATION_LOG_LEVEL)?,
            image: non_empty(annotations, ANNOTATION_PROXY_IMAGE)?,
            cpu_request: quantity(annotations, ANNOTATION_PROXY_CPU_REQUEST)?,
            cpu_limit: quantity(annotations, ANNOTATION_PROXY_CPU_LIMIT)?,
            memory_request: quantity(annotations, ANNOTATION_PROXY_MEMORY_REQUEST)?,
            memory_limit: quantity(annotations, ANNOTATION_PROXY_MEMORY_LIMIT)?,
        })
    }
}

fn bad(annotation: &'static str, message: String) -> InjectError {
    InjectError::Annotation {
        annotation,
        message,
    }
}

fn text<'a>(
    annotations: &'a Map<String, Value>,
    key: &'static str,
) -> Result<Option<&'a str>, InjectError> {
    match annotations.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim())),
        // Kubernetes refuses a non-string annotation too; say so before it does.
        Some(other) => Err(bad(key, format!("{other} must be a string (quote it)"))),
    }
}

fn non_empty(
    annotations: &Map<String, Value>,
    key: &'static str,
) -> Result<Option<String>, InjectError> {
    match text(annotations, key)? {
        Some("") => Err(bad(key, "is empty".into())),
        value => Ok(value.map(str::to_string)),
    }
}

/// `"5432, 6379"` → [5432, 6379].
fn ports(annotations: &Map<String, Value>, key: &'static str) -> Result<Vec<u16>, InjectError> {
    let Some(list) = text(annotations, key)? else {
        return Ok(Vec::new());
    };
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.parse::<u16>() {
            Ok(port) if port > 0 => Ok(port),
            _ => Err(bad(
                key,
                format!("{p:?} is not a port (expected comma-separated numbers 1-65535)"),
            )),
        })
        .collect()
}

/// A Kubernetes quantity as people write them (`100m`, `0.5`, `64Mi`, `1G`); the API
/// server parses it fully, this catches the typo at injection time with the annotation.
fn quantity(
    annotations: &Map<String, Value>,
    key: &'static str,
) -> Result<Option<String>, InjectError> {
    let Some(value) = text(annotations, key)? else {
        return Ok(None);
    };
    let number_len = value
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (number, suffix) = value.split_at(number_len);
    let number_ok = !number.is_empty()
        && number.bytes().filter(|b| *b == b'.').count() <= 1
        && number.bytes().next().is_some_and(|b| b.is_ascii_digit());
    const SUFFIXES: [&str; 14] = [
        "", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
    ];
    if number_ok && SUFFIXES.contains(&suffix) {
        Ok(Some(value.to_string()))
    } else {
        Err(bad(
            key,
            format!("{value:?} is not a quantity (such as 100m, 0.5, 64Mi, 1Gi)"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn reads_overrides() {
        let overrides = Overrides::read(&map(json!({
            "outrigger.dev/skip-inbound-ports": "9090, 9091",
            "outrigger.dev/skip-outbound-ports": "5432",
            "outrigger.dev/proxy-log-level": "debug",
            "outrigger.dev/proxy-memory-limit": "32Mi",
            "outrigger.dev/proxy-cpu-request": "0.05",
        })))
        .unwrap();
        assert_eq!(overrides.skip_inbound, [9090, 9091]);
        assert_eq!(overrides.skip_outbound, [5432]);
        assert_eq!(overrides.log_level.as_deref(), Some("debug"));
        assert_eq!(overrides.memory_limit.as_deref(), Some("32Mi"));
        assert_eq!(overrides.cpu_request.as_deref(), Some("0.05"));
    }

    #[test]
    fn bad_values_name_the_annotation() {
        for (key, value) in [
            (ANNOTATION_SKIP_INBOUND_PORTS, "http"),
            (ANNOTATION_SKIP_OUTBOUND_PORTS, "70000"),
            (ANNOTATION_PROXY_MEMORY_LIMIT, "lots"),
            (ANNOTATION_PROXY_CPU_LIMIT, "1.2.3"),
            (ANNOTATION_PROXY_IMAGE, ""),
        ] {
            let error = Overrides::read(&map(json!({ key: value }))).unwrap_err();
            assert!(error.to_string().contains(key), "{error}");
        }
        let error = inject_choice(&map(json!({"outrigger.dev/inject": "yes"}))).unwrap_err();
        assert!(error.to_string().contains("expected enabled or disabled"));
    }
}
