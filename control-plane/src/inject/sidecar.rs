//! The containers and volumes injection adds, built with the Kubernetes types so that
//! every field name is checked by the compiler, then turned into JSON for the pod.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, ObjectFieldSelector, Probe, ProjectedVolumeSource,
    ResourceRequirements, SeccompProfile, SecurityContext, ServiceAccountTokenProjection, Volume,
    VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::InjectConfig;
use super::annotations::Overrides;

/// The native sidecar's name; its presence means the pod is injected.
pub const PROXY_CONTAINER: &str = "outrigger-proxy";
/// The iptables init container's name.
pub const INIT_CONTAINER: &str = "outrigger-init";
/// The proxy's uid: the iptables rules let its own traffic through.
pub const PROXY_UID: i64 = 2102;
pub const INBOUND_PORT: u16 = 4143;
pub const OUTBOUND_PORT: u16 = 4140;
pub const ADMIN_PORT: u16 = 4191;
/// The audience of the projected service-account token the proxy bootstraps with.
pub const TOKEN_AUDIENCE: &str = "outrigger";
/// The ConfigMap, in the pod's namespace, holding `trust-anchors.pem`.
pub const TRUST_ANCHORS_CONFIGMAP: &str = "outrigger-trust-anchors";

const TRUST_VOLUME: &str = "outrigger-trust-anchors";
const TOKEN_VOLUME: &str = "outrigger-token";
const INIT_RUN_VOLUME: &str = "outrigger-init-run";
const TRUST_DIR: &str = "/var/run/outrigger/trust";
const TOKEN_DIR: &str = "/var/run/secrets/outrigger";
/// The kubelet refreshes the token at 80% of this; it is only used for the first
/// certificate (renewal is by the certificate itself).
const TOKEN_SECONDS: i64 = 3600;

/// What a pod needs besides the config: who it is and what to skip.
pub(super) struct PodFacts<'a> {
    pub overrides: &'a Overrides,
    /// The MeshService its app is an instance of, if known.
    pub service: Option<&'a str>,
    /// The app's first declared port: inbound requests go there.
    pub app_port: Option<u16>,
}

/// The containers to put first in `initContainers`, in order.
pub(super) fn init_containers(config: &InjectConfig, pod: &PodFacts<'_>) -> [Value; 2] {
    [
        to_json(&init_container(config, pod)),
        to_json(&proxy_container(config, pod)),
    ]
}

/// The volumes the two containers mount.
pub(super) fn volumes() -> [Value; 3] {
    let trust = Volume {
        name: TRUST_VOLUME.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: TRUST_ANCHORS_CONFIGMAP.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let token = Volume {
        name: TOKEN_VOLUME.into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    audience: Some(TOKEN_AUDIENCE.into()),
                    expiration_seconds: Some(TOKEN_SECONDS),
                    path: "token".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    // iptables takes a lock under /run; the root filesystem stays read-only.
    let run = Volume {
        name: INIT_RUN_VOLUME.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    };
    [to_json(&trust), to_json(&token), to_json(&run)]
}

fn init_container(config: &InjectConfig, pod: &PodFacts<'_>) -> Container {
    let mut skip_inbound = vec![ADMIN_PORT];
    skip_inbound.extend(&pod.overrides.skip_inbound);
    let mut args = vec![
        "init".to_string(),
        "--proxy-uid".into(),
        PROXY_UID.to_string(),
        "--skip-inbound-ports".into(),
        join(&skip_inbound),
    ];
    if !pod.overrides.skip_outbound.is_empty() {
        args.push("--skip-outbound-ports".into());
        args.push(join(&pod.overrides.skip_outbound));
    }
    Container {
        name: INIT_CONTAINER.into(),
        image: Some(image(config, pod)),
        args: Some(args),
        resources: Some(resources(
            [("cpu", "10m"), ("memory", "10Mi")],
            [("memory", "32Mi")],
        )),
        // Root for iptables, with only the two capabilities it needs.
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_ADMIN".into(), "NET_RAW".into()]),
                drop: Some(vec!["ALL".into()]),
            }),
            seccomp_profile: Some(runtime_default()),
            ..Default::default()
        }),
        volume_mounts: Some(vec![mount(INIT_RUN_VOLUME, "/run", false)]),
        ..Default::default()
    }
}

fn proxy_container(config: &InjectConfig, pod: &PodFacts<'_>) -> Container {
    let o = pod.overrides;
    let mut env = vec![
        // The downward API first: later values refer to it as $(POD_IP).
        EnvVar {
            name: "POD_IP".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "status.podIP".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        env_var("OUTRIGGER_CONTROL_PLANE", &config.control_plane),
        env_var("OUTRIGGER_TRUST_DOMAIN", &config.trust_domain),
        env_var(
            "OUTRIGGER_TRUST_ANCHORS",
            &format!("{TRUST_DIR}/trust-anchors.pem"),
        ),
        env_var("OUTRIGGER_TOKEN_FILE", &format!("{TOKEN_DIR}/token")),
        env_var("OUTRIGGER_INBOUND_ADDR", &format!("0.0.0.0:{INBOUND_PORT}")),
        env_var(
            "OUTRIGGER_OUTBOUND_ADDR",
            &format!("127.0.0.1:{OUTBOUND_PORT}"),
        ),
        // The kubelet probes the pod IP, so admin listens on every address (as linkerd's
        // does); the init container leaves its port unredirected.
        env_var("OUTRIGGER_ADMIN_ADDR", &format!("0.0.0.0:{ADMIN_PORT}")),
        env_var(
            "OUTRIGGER_ADVERTISE_ADDR",
            &format!("$(POD_IP):{INBOUND_PORT}"),
        ),
        env_var("RUST_LOG", o.log_level.as_deref().unwrap_or("info")),
    ];
    if let Some(service) = pod.service {
        env.push(env_var("OUTRIGGER_SERVICE", service));
    }
    if let Some(port) = pod.app_port {
        env.push(env_var("OUTRIGGER_APP_ADDR", &format!("127.0.0.1:{port}")));
    }
    let probe = |path: &str, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(ADMIN_PORT.into()),
            ..Default::default()
        }),
        period_seconds: Some(1),
        failure_threshold: Some(failures),
        ..Default::default()
    };
    let requests = [
        ("cpu", o.cpu_request.as_deref().unwrap_or("10m")),
        ("memory", o.memory_request.as_deref().unwrap_or("16Mi")),
    ];
    let mut limits = vec![("memory", o.memory_limit.as_deref().unwrap_or("64Mi"))];
    if let Some(cpu) = o.cpu_limit.as_deref() {
        limits.push(("cpu", cpu));
    }
    Container {
        name: PROXY_CONTAINER.into(),
        image: Some(image(config, pod)),
        // A native sidecar: started before the app, stopped after it.
        restart_policy: Some("Always".into()),
        ports: Some(vec![
            port("outrigger-in", INBOUND_PORT),
            port("outrigger-admin", ADMIN_PORT),
        ]),
        env: Some(env),
        // The app starts once this passes: certificate and config held. Two minutes
        // covers a control plane that is itself starting.
        startup_probe: Some(probe("/ready", 120)),
        readiness_probe: Some(Probe {
            period_seconds: Some(10),
            ..probe("/ready", 3)
        }),
        liveness_probe: Some(Probe {
            period_seconds: Some(10),
            ..probe("/live", 3)
        }),
        resources: Some(resources(requests, limits)),
        security_context: Some(SecurityContext {
            run_as_user: Some(PROXY_UID),
            run_as_group: Some(PROXY_UID),
            run_as_non_root: Some(true),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            seccomp_profile: Some(runtime_default()),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            mount(TRUST_VOLUME, TRUST_DIR, true),
            mount(TOKEN_VOLUME, TOKEN_DIR, true),
        ]),
        ..Default::default()
    }
}

fn image(config: &InjectConfig, pod: &PodFacts<'_>) -> String {
    pod.overrides
        .image
        .clone()
        .unwrap_or_else(|| config.proxy_image.clone())
}

fn join(ports: &[u16]) -> String {
    let text: Vec<String> = ports.iter().map(u16::to_string).collect();
    text.join(",")
}

fn env_var(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

fn port(name: &str, number: u16) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: number.into(),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

fn mount(volume: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        // Absent means writable; `readOnly: false` would only be noise in the pod.
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        ..Default::default()
    }
}

fn resources<'a>(
    requests: impl IntoIterator<Item = (&'a str, &'a str)>,
    limits: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> ResourceRequirements {
    let map = |items: &mut dyn Iterator<Item = (&'a str, &'a str)>| {
        items
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect::<BTreeMap<_, _>>()
    };
    ResourceRequirements {
        requests: Some(map(&mut requests.into_iter())),
        limits: Some(map(&mut limits.into_iter())),
        ..Default::default()
    }
}

/// The Kubernetes types serialize to JSON without fail (no maps with non-string keys).
fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("Kubernetes types serialize to JSON")
}
