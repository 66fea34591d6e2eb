//! The label sets of the proxy's metric families, typed so that a family cannot be given
//! the wrong labels. Label values are built once, when a handle is resolved, never per
//! request.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

/// Which side of the proxy saw the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

impl EncodeLabelValue for Direction {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// One service on one side: the callee for outbound, this proxy's own for inbound.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ServiceLabels {
    pub direction: Direction,
    pub service: String,
}

/// Why a listener refused a client (`crate::hardening::Refusal`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RefusalLabels {
    pub direction: Direction,
    pub reason: &'static str,
}

/// One edge of the call graph as this proxy sees it. `caller` is the verified identity of
/// the calling workload (inbound; empty for a plaintext caller and for outbound, where the
/// caller is this proxy's own workload); `route` is the TrafficPolicy's name for the
/// route, when it gives one.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct EdgeLabels {
    #[prometheus(flatten)]
    pub service: ServiceLabels,
    pub caller: String,
    pub route: String,
}

/// An answer on an edge: the status code (or its class for uncommon codes) and, when the
/// proxy answered itself, the mesh error code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResponseLabels {
    #[prometheus(flatten)]
    pub edge: EdgeLabels,
    pub status_code: String,
    pub error: &'static str,
}

/// A gRPC answer on an edge, by `grpc-status` name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct GrpcLabels {
    #[prometheus(flatten)]
    pub edge: EdgeLabels,
    pub grpc_status: &'static str,
}

/// A destination service of the resilience counters (outbound only).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DestinationLabels {
    pub service: String,
}

/// Breaker trips: `detected`, or `enforced` (within maxEjectedPercent).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct EjectionLabels {
    pub service: String,
    pub kind: &'static str,
}

/// Bytes of opaque TCP: `sent` by the connecting side, `received` back.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TcpBytesLabels {
    #[prometheus(flatten)]
    pub service: ServiceLabels,
    pub way: &'static str,
}

/// The result of an mTLS handshake: `ok` or `error`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResultLabels {
    pub result: &'static str,
}

/// One endpoint's breaker (`circuit_state`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct EndpointLabels {
    pub service: String,
    pub endpoint: String,
}

/// A denial by the ServerPolicy on an edge: an `http` request or a `tcp` connection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DenialLabels {
    #[prometheus(flatten)]
    pub edge: EdgeLabels,
    pub protocol: &'static str,
}
