//! Decoding a watch line (docs/watch-protocol.md) straight into table entries. A full
//! state of 10,000 services is decoded one service at a time, each turned into its
//! compact entry at once, and a TrafficPolicy is kept as the JSON text it arrived as:
//! the parsed form of every service never exists at once, so decoding does not leave
//! the process with a heap sized for the whole mesh.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use outrigger_api::{Protocol, ServerPolicySpec, ServerPolicyUpdate, ServiceRef};
use serde::Deserialize;
use serde::de::{Deserializer, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::table::ServiceEntry;

/// One line of the watch stream, as the proxy uses it (the wire form is
/// `outrigger_api::WatchEvent`; this reads the same JSON).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeshUpdate {
    Full(FullState),
    Delta(DeltaState),
}

#[derive(Debug, Deserialize)]
pub struct FullState {
    pub version: u64,
    pub trust_bundle: String,
    #[serde(deserialize_with = "entries")]
    pub services: Vec<Arc<ServiceEntry>>,
    #[serde(default)]
    pub server_policy: Option<ServerPolicySpec>,
}

#[derive(Debug, Deserialize)]
pub struct DeltaState {
    pub version: u64,
    pub base: u64,
    #[serde(default)]
    pub trust_bundle: Option<String>,
    #[serde(default, deserialize_with = "entries")]
    pub upserted: Vec<Arc<ServiceEntry>>,
    #[serde(default)]
    pub removed: Vec<ServiceRef>,
    #[serde(default)]
    pub server_policy: Option<ServerPolicyUpdate>,
}

/// A service as sent (`outrigger_api::ServiceView`), its policy left as text. Strings
/// borrow from the line where they can (no escapes), so reading a service allocates
/// little besides its entry.
#[derive(Deserialize)]
pub(super) struct WireService<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow)]
    pub namespace: Cow<'a, str>,
    #[serde(borrow)]
    pub identity: Cow<'a, str>,
    pub protocol: Protocol,
    #[serde(borrow)]
    pub endpoints: Vec<WireEndpoint<'a>>,
    #[serde(default, borrow)]
    pub traffic_policy: Option<&'a RawValue>,
}

/// An endpoint as sent (`outrigger_api::EndpointView`).
#[derive(Deserialize)]
pub(super) struct WireEndpoint<'a> {
    #[serde(borrow)]
    pub address: Cow<'a, str>,
}

/// Decodes one line.
pub fn decode(line: &[u8]) -> Result<MeshUpdate, serde_json::Error> {
    serde_json::from_slice(line)
}

/// A list of services, each made into its entry as soon as it is read. A service that
/// cannot be used is skipped with a warning; the others still apply.
fn entries<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Arc<ServiceEntry>>, D::Error> {
    struct Entries;

    impl<'de> Visitor<'de> for Entries {
        type Value = Vec<Arc<ServiceEntry>>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of services")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut entries = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(service) = seq.next_element::<WireService<'de>>()? {
                match ServiceEntry::from_wire(&service) {
                    Ok(entry) => entries.push(Arc::new(entry)),
                    Err(error) => tracing::warn!(
                        service = %format_args!("{}.{}", service.name, service.namespace),
                        %error,
                        "skipping service"
                    ),
                }
            }
            entries.shrink_to_fit();
            Ok(entries)
        }
    }

    deserializer.deserialize_seq(Entries)
}

#[cfg(test)]
mod tests {
    use outrigger_api::{
        EndpointView, ServiceView, Snapshot, SnapshotDelta, TrafficPolicySpec, WatchEvent,
    };

    use super::*;

    fn view(name: &str, address: &str) -> ServiceView {
        ServiceView {
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
        assert_eq!(state.services[1].key(), "b.shop");
        assert_eq!(
            state.services[0].traffic_policy(),
            view("a", "").traffic_policy,
            "the policy survives as text"
        );

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
        assert_eq!(delta.upserted[0].key(), "c.shop");
        assert!(delta.removed.is_empty() && delta.server_policy.is_none());
    }

    #[test]
    fn a_bad_service_is_skipped_and_a_bad_line_is_an_error() {
        let line = br#"{"full":{"version":1,"trust_bundle":"","services":[
            {"name":"bad","namespace":"x","identity":"nope","protocol":"http","endpoints":[]},
            {"name":"good","namespace":"x","identity":"spiffe://cluster.local/ns/x/sa/good","protocol":"http","endpoints":[{"address":"127.0.0.1:1"}]}
        ]}}"#;
        let MeshUpdate::Full(state) = decode(line).unwrap() else {
            panic!("a full state");
        };
        assert_eq!(state.services.len(), 1);
        assert!(decode(br#"{"full":{"version":1}}"#).is_err());
        assert!(decode(b"{\"partial\":").is_err());
    }
}
