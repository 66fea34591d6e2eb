//! What the control plane and the proxies say to each other, as JSON.

use serde::{Deserialize, Serialize};

use crate::resource::Protocol;

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

/// One line of the `GET /v1/watch` stream: everything a proxy needs, whole, versioned.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u64,
    pub trust_bundle: String,
    /// The services this proxy may call.
    pub services: Vec<ServiceView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceView {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    pub protocol: Protocol,
    pub endpoints: Vec<EndpointView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointView {
    /// `ip:port` of the instance's sidecar inbound port.
    pub address: String,
}

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
                name: "payments".into(),
                namespace: "shop".into(),
                identity: "spiffe://cluster.local/ns/shop/sa/payments".into(),
                protocol: Protocol::Http,
                endpoints: vec![EndpointView {
                    address: "127.0.0.1:4143".into(),
                }],
            }],
        };
        let line = serde_json::to_string(&snap).unwrap();
        assert!(!line.contains('\n'), "one snapshot per line");
        assert_eq!(serde_json::from_str::<Snapshot>(&line).unwrap(), snap);
    }
}
