//! What the control plane and the proxies say to each other, as JSON.

use serde::{Deserialize, Serialize};

use crate::resource::Protocol;
use crate::server_policy::ServerPolicySpec;
use crate::traffic_policy::TrafficPolicySpec;

/// `POST /v1/certificates`: a CSR, proven either by a bootstrap token or by the current
/// certificate presented over mTLS (renewal).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateRequest {
    /// PEM `CERTIFICATE REQUEST`.
    pub csr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CertificateResponse {
    /// PEM, leaf first, then the issuer.
    pub certificate_chain: String,
    /// PEM trust anchors.
    pub trust_bundle: String,
    /// `notAfter` of the leaf, seconds since the Unix epoch.
    pub expires_at: i64,
}

/// Body of every error the control plane's API returns.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
    pub message: String,
}

/// The whole state for one proxy, as the first line of `GET /v1/watch[?service=<namespace>/<name>&proxy=<proxy_id>]`
/// sends it (inside [`WatchEvent::Full`]): everything one proxy needs, versioned. `service` names the MeshService the proxy
/// serves; without it, the control plane uses the MeshService whose identity is the
/// proxy's, if only one is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u64,
    pub trust_bundle: String,
    /// The services this proxy may call, with how to call them.
    pub services: Vec<ServiceView>,
    /// How the proxy's own service accepts calls; absent means DESIGN.md's defaults
    /// (strict mTLS, any identity of the trust domain allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_policy: Option<ServerPolicySpec>,
}

/// One line of the `GET /v1/watch` stream. The first line of every stream is `Full`;
/// after it, each line is a `Delta` from the version the proxy holds. Externally tagged
/// (`{"full":{...}}`, `{"delta":{...}}`) so that a large first line is decoded in one
/// pass, without buffering it as an untyped tree first. docs/watch-protocol.md has the
/// whole protocol.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchEvent {
    /// Everything the proxy needs, replacing what it holds.
    Full(Snapshot),
    /// What changed between `base` and `version`.
    Delta(SnapshotDelta),
}

/// The changes from version `base` to version `version`. A proxy applies it only if it
/// holds exactly `base`; otherwise it has missed something and asks for a full state
/// again (by reconnecting). Its size depends on what changed, not on the size of the mesh.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SnapshotDelta {
    pub version: u64,
    pub base: u64,
    /// The new trust bundle, when it changed (anchor rotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_bundle: Option<String>,
    /// Services added or changed, each whole.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upserted: Vec<ServiceView>,
    /// Services that are gone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<ServiceRef>,
    /// Present when the proxy's own ServerPolicy changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_policy: Option<ServerPolicyUpdate>,
}

/// A service by name, in a delta's `removed`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
}

/// The proxy's ServerPolicy after a change; `spec: None` means it was removed (back to
/// DESIGN.md's defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerPolicyUpdate {
    #[serde(default)]
    pub spec: Option<ServerPolicySpec>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceView {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    pub protocol: Protocol,
    /// Service addresses (`ip:port`), normalized; a transparent proxy routes a
    /// connection whose original destination is one of them to this service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// Static endpoints and healthy registered instances.
    pub endpoints: Vec<EndpointView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicySpec>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointView {
    /// `ip:port` of the instance's sidecar inbound port.
    pub address: String,
}

/// `POST /v1/register` (mTLS), sent by every proxy every few seconds: the config version
/// it has applied and, for a proxy in front of an app, that app instance and its health.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// Chosen by the proxy at start, unique per process; keys the proxy in `outrigger status`.
    pub proxy_id: String,
    pub applied_version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<Instance>,
}

/// An app instance behind a sidecar. The control plane accepts it only for a MeshService
/// whose identity is the caller's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    pub service: String,
    pub namespace: String,
    /// `ip:port` where peers reach the sidecar's inbound port.
    pub address: String,
    /// The app's last health check; an unhealthy instance leaves the endpoint set.
    pub healthy: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// The registration lapses if no heartbeat comes within this many milliseconds.
    pub expires_in_ms: u64,
}

/// `GET /api/status` on the control plane's HTTP port: what `outrigger status` prints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshStatus {
    /// The version being served.
    pub version: u64,
    /// Every connected proxy has applied `version`.
    pub converged: bool,
    /// Errors of the last reload, if the policy files are invalid now (the last good
    /// version is still served).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_errors: Vec<String>,
    pub proxies: Vec<ProxyStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyStatus {
    pub proxy_id: String,
    pub identity: String,
    /// `namespace/name` of the MeshService it serves, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Where the proxy connects from (or its registered inbound address).
    pub address: String,
    pub applied_version: u64,
    pub last_seen_ms_ago: u64,
    /// Its watch stream is open.
    pub connected: bool,
}

#[cfg(test)]
mod round_trips;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_request_rejects_unknown_fields() {
        let ok: CertificateRequest = serde_json::from_str(r#"{"csr":"x"}"#).unwrap();
        assert!(ok.token.is_none());
        assert!(serde_json::from_str::<CertificateRequest>(r#"{"csr":"x","san":"y"}"#).is_err());
    }

    #[test]
    fn snapshot_roundtrips() {
        let snap = Snapshot {
            version: 3,
            trust_bundle: "pem".into(),
            services: vec![ServiceView {
                addresses: vec![],
                name: "payments".into(),
                namespace: "shop".into(),
                identity: "spiffe://cluster.local/ns/shop/sa/payments".into(),
                protocol: Protocol::Http,
                endpoints: vec![EndpointView {
                    address: "127.0.0.1:4143".into(),
                }],
                traffic_policy: None,
            }],
            server_policy: None,
        };
        let line = serde_json::to_string(&snap).unwrap();
        assert!(!line.contains('\n'), "one snapshot per line");
        assert_eq!(serde_json::from_str::<Snapshot>(&line).unwrap(), snap);
    }

    #[test]
    fn watch_events_roundtrip_externally_tagged() {
        let delta = WatchEvent::Delta(SnapshotDelta {
            version: 8,
            base: 7,
            removed: vec![ServiceRef {
                namespace: "shop".into(),
                name: "old".into(),
            }],
            server_policy: Some(ServerPolicyUpdate { spec: None }),
            ..SnapshotDelta::default()
        });
        let line = serde_json::to_string(&delta).unwrap();
        assert!(
            line.starts_with(r#"{"delta":{"version":8,"base":7,"#),
            "{line}"
        );
        assert_eq!(serde_json::from_str::<WatchEvent>(&line).unwrap(), delta);
        let full = WatchEvent::Full(Snapshot::default());
        let line = serde_json::to_string(&full).unwrap();
        assert!(line.starts_with(r#"{"full":{"version":0"#), "{line}");
        assert_eq!(serde_json::from_str::<WatchEvent>(&line).unwrap(), full);
    }
}
