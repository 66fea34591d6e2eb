//! HTTPS to the control plane. The control plane must present
//! `spiffe://<td>/ns/outrigger/sa/control-plane`, chained to the mesh's trust anchors.
//! Requests are rare (issuance, renewal, one long-lived watch), so each gets its own
//! connection.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use outrigger_certs::{CertStore, ServerIdVerifier, SpiffeId, TrustBundle, client_config};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Largest JSON answer read whole (certificates, errors); the watch stream is not read whole.
const MAX_RESPONSE: usize = 1 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub(crate) enum ControlPlaneError {
    #[error("cannot reach the control plane at {authority}: {reason}")]
    Unreachable { authority: String, reason: String },
    #[error("control plane answered {status}: {message}")]
    Refused { status: StatusCode, message: String },
    #[error("control plane sent an unreadable answer: {0}")]
    Protocol(String),
}

impl ControlPlaneError {
    fn protocol(e: impl std::fmt::Display) -> Self {
        ControlPlaneError::Protocol(e.to_string())
    }
}

/// Talks to one control plane, with or without presenting the workload certificate.
pub(crate) struct ControlPlaneClient {
    authority: String,
    /// Server name sent in the handshake; identity is checked by SPIFFE id, not by name.
    server_name: ServerName<'static>,
    anonymous: Arc<ClientConfig>,
    mutual: Arc<ClientConfig>,
}

impl ControlPlaneClient {
    pub(crate) fn new(
        authority: &str,
        trust_domain: &str,
        bundle: Arc<TrustBundle>,
        certs: Arc<CertStore>,
    ) -> Result<Self, crate::Error> {
        let cp_id = SpiffeId::workload(trust_domain, "outrigger", "control-plane")
            .map_err(|e| crate::Error::Config(format!("OUTRIGGER_TRUST_DOMAIN: {e}")))?;
        let verifier = ServerIdVerifier::new(bundle, cp_id);
        let alpn: &[&[u8]] = &[b"http/1.1"];
        let host = authority
            .rsplit_once(':')
            .map(|(host, _)| host)
            .unwrap_or(authority)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let server_name = ServerName::try_from(host.to_string()).map_err(|_| {
            crate::Error::Config(format!(
                "OUTRIGGER_CONTROL_PLANE: invalid host in {authority:?}"
            ))
        })?;
        Ok(ControlPlaneClient {
            authority: authority.to_string(),
            server_name,
            anonymous: client_config(None, verifier.clone(), alpn)?,
            mutual: client_config(Some(certs), verifier, alpn)?,
        })
    }

    pub(crate) fn authority(&self) -> &str {
        &self.authority
    }

    /// Sends one request; `mutual` presents the current workload certificate.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        mutual: bool,
    ) -> Result<Response<Incoming>, ControlPlaneError> {
        let unreachable = |reason: String| ControlPlaneError::Unreachable {
            authority: self.authority.clone(),
            reason,
        };
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.authority))
            .await
            .map_err(|_| unreachable(format!("connect timed out after {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| unreachable(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let config = if mutual {
            &self.mutual
        } else {
            &self.anonymous
        };
        let tls = TlsConnector::from(config.clone())
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| unreachable(format!("TLS: {}", crate::tls_io_error(&e))))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%error, "control-plane connection ended");
            }
        });
        let has_body = body.is_some();
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, &self.authority);
        if has_body {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(ControlPlaneError::protocol)?;
        sender
            .send_request(request)
            .await
            .map_err(|e| unreachable(e.to_string()))
    }

    /// Sends a JSON request and reads a JSON answer; non-2xx answers become `Refused` with
    /// the control plane's own message.
    pub(crate) async fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &impl serde::Serialize,
        mutual: bool,
    ) -> Result<T, ControlPlaneError> {
        let body = serde_json::to_vec(body).map_err(ControlPlaneError::protocol)?;
        let response = self
            .send(method, path, Some(Bytes::from(body)), mutual)
            .await?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(ControlPlaneError::protocol)?
            .to_bytes();
        if !status.is_success() {
            let message = serde_json::from_slice::<outrigger_api::ApiError>(&bytes)
                .map(|e| format!("{}: {}", e.error, e.message))
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            return Err(ControlPlaneError::Refused { status, message });
        }
        serde_json::from_slice(&bytes).map_err(ControlPlaneError::protocol)
    }
}
