//! Decoding a watch line (docs/watch-protocol.md). Services are read as borrowed views
//! of the line (their policies as raw JSON), and become table entries when applied: the
//! parsed form of the whole mesh never exists at once, so decoding does not leave the
//! process with a heap sized for the whole mesh.

use std::borrow::Cow;

use outrigger_api::{Protocol, ServerPolicySpec, ServerPolicyUpdate, ServiceRef};
use serde::Deserialize;
use serde_json::value::RawValue;

/// One line of the watch stream, as the proxy uses it (the wire form is
/// `outrigger_api::WatchEvent`; this reads the same JSON).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum MeshUpdate<'a> {
    #[serde(borrow)]
    Full(FullState<'a>),
    #[serde(borrow)]
    Delta(DeltaState<'a>),
}

#[derive(Debug, Deserialize)]
pub(crate) struct FullState<'a> {
    pub version: u64,
    pub trust_bundle: String,
    #[serde(borrow)]
    pub services: Vec<WireService<'a>>,
    #[serde(default)]
    pub server_policy: Option<ServerPolicySpec>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct DeltaState<'a> {
    pub version: u64,
    pub base: u64,
    #[serde(default)]
    pub trust_bundle: Option<String>,
    #[serde(default, borrow)]
    pub upserted: Vec<WireService<'a>>,
    #[serde(default)]
    pub removed: Vec<ServiceRef>,
    #[serde(default)]
    pub server_policy: Option<ServerPolicyUpdate>,
}

/// A service as sent (`outrigger_api::ServiceView`), its policy left as text. Strings
/// borrow from the line where they can (no escapes), so reading a service allocates
/// little.
#[derive(Debug, Deserialize)]
pub(crate) struct WireService<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow)]
    pub namespace: Cow<'a, str>,
    #[serde(borrow)]
    pub identity: Cow<'a, str>,
    pub protocol: Protocol,
    #[serde(default, borrow)]
    pub addresses: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    pub endpoints: Vec<WireEndpoint<'a>>,
    #[serde(default, borrow)]
    pub traffic_policy: Option<&'a RawValue>,
}

/// An endpoint as sent (`outrigger_api::EndpointView`).
#[derive(Debug, Deserialize)]
pub(crate) struct WireEndpoint<'a> {
    #[serde(borrow)]
    pub address: Cow<'a, str>,
}

/// Decodes one line; the update borrows from it.
pub(crate) fn decode(line: &[u8]) -> Result<MeshUpdate<'_>, serde_json::Error> {
    serde_json::from_slice(line)
}

#[cfg(test)]
mod tests {
    use outrigger_api::{
        EndpointView, ServiceView, Snapshot, SnapshotDelta, TrafficPolicySpec, WatchEvent,
    };

    use super::*;

    fn view(name: &str, address: &str) -> ServiceView {
        ServiceView {
            addresses: vec![],
            name: name.into(),
            namespace: "shop".into(),
            identity: format!("spiffe://cluster.local/ns/shop/sa/{name}"),
            protocol: Protocol::Http,
            endpoints: vec![EndpointView {
                address: address.into(),
            }],
            traffic_policy: Some(TrafficPolicySpec {
                load_balancer: Some(outrigger_api::LoadBalancer::RoundRobin),
                ..TrafficPolicySpec::default()
            }),
        }
    }

    #[test]
    fn reads_what_the_control_plane_writes() {
        let full = WatchEvent::Full(Snapshot {
            version: 7,
            trust_bundle: "pem".into(),
            services: vec![view("a", "127.0.0.1:1"), view("b", "127.0.0.1:2")],
            server_policy: None,
        });
        let line = serde_json::to_vec(&full).unwrap();
        let MeshUpdate::Full(state) = decode(&line).unwrap() else {
            panic!("a full state");
        };
        assert_eq!(state.version, 7);
        assert_eq!(state.services.len(), 2);
        assert_eq!(state.services[1].name, "b");
        assert!(
            matches!(state.services[1].name, Cow::Borrowed(_)),
            "borrowed from the line"
        );
        let policy: TrafficPolicySpec =
            serde_json::from_str(state.services[0].traffic_policy.unwrap().get()).unwrap();
        assert_eq!(Some(policy), view("a", "").traffic_policy, "kept as text");

        let delta = WatchEvent::Delta(SnapshotDelta {
            version: 8,
            base: 7,
            upserted: vec![view("c", "127.0.0.1:3")],
            ..SnapshotDelta::default()
        });
        let line = serde_json::to_vec(&delta).unwrap();
        let MeshUpdate::Delta(delta) = decode(&line).unwrap() else {
            panic!("a delta");
        };
        assert_eq!((delta.version, delta.base), (8, 7));
        assert_eq!(delta.upserted[0].name, "c");
        assert!(delta.removed.is_empty() && delta.server_policy.is_none());
    }

    #[test]
    fn a_bad_line_is_an_error() {
        assert!(decode(br#"{"full":{"version":1}}"#).is_err());
        assert!(decode(b"{\"partial\":").is_err());
    }
}
