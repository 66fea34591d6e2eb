//! The admission webhook's `caBundle`. The API server calls `/v1/admission` over TLS and
//! trusts only the `caBundle` of the MutatingWebhookConfiguration; our serving
//! certificate chains to the mesh's trust anchors, which exist only once the first
//! replica has made the CA (in a Secret). So, as istiod does, each replica writes the
//! trust anchors into the configuration at start, and again whenever they change
//! (rotation), instead of asking the installer to know them in advance.
//!
//! The write is a JSON Patch guarded by a `test` of the `resourceVersion` read just
//! before: if someone changed the configuration in between (another replica, an
//! `kubectl apply`), the patch fails and is retried on a fresh read, so it never sets
//! a caBundle on a webhook that moved to another index.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use outrigger_certs::Ca;
use tokio::sync::watch;
use tracing::{info, warn};

/// First wait after a failed attempt; doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// A missing configuration or missing RBAC will not fix itself quickly: stay quiet-ish.
const MAX_RETRY: Duration = Duration::from_secs(120);

/// What one attempt did.
#[derive(Debug, PartialEq, Eq)]
pub enum CaBundleUpdate {
    /// These webhooks got the new bundle.
    Patched(Vec<String>),
    /// Every webhook already had it.
    Unchanged,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookCaError {
    #[error(
        "the MutatingWebhookConfiguration {0} does not exist: pods will not be injected (apply k8s/webhook.yaml)"
    )]
    Missing(String),
    #[error("updating the caBundle of MutatingWebhookConfiguration {name}: {reason}")]
    Api { name: String, reason: String },
}

/// Sets every webhook's `caBundle` in the configuration `name` to `bundle_pem`, unless it
/// already holds it.
pub async fn update(
    client: Client,
    name: &str,
    bundle_pem: &str,
) -> Result<CaBundleUpdate, WebhookCaError> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client);
    let api_error = |e: kube::Error| WebhookCaError::Api {
        name: name.to_string(),
        reason: match e {
            kube::Error::Api(s) if s.code == 403 => {
                format!("forbidden by RBAC (apply k8s/rbac.yaml): {}", s.message)
            }
            // The resourceVersion test failed: changed since read; the retry reads again.
            kube::Error::Api(s) if s.code == 422 || s.code == 409 => {
                format!("changed while being updated: {}", s.message)
            }
            other => other.to_string(),
        },
    };
    let config = api
        .get_opt(name)
        .await
        .map_err(api_error)?
        .ok_or_else(|| WebhookCaError::Missing(name.to_string()))?;
    let bundle = bundle_pem.as_bytes();
    let mut ops = vec![serde_json::json!({
        "op": "test",
        "path": "/metadata/resourceVersion",
        "value": config.metadata.resource_version,
    })];
    let mut patched = Vec::new();
    for (i, webhook) in config.webhooks.iter().flatten().enumerate() {
        if webhook.client_config.ca_bundle.as_ref().map(|b| &b.0[..]) == Some(bundle) {
            continue;
        }
        // `add` replaces a member that exists and creates one that does not.
        ops.push(serde_json::json!({
            "op": "add",
            "path": format!("/webhooks/{i}/clientConfig/caBundle"),
            "value": base64::engine::general_purpose::STANDARD.encode(bundle),
        }));
        patched.push(webhook.name.clone());
    }
    if patched.is_empty() {
        return Ok(CaBundleUpdate::Unchanged);
    }
    let patch: json_patch::Patch =
        serde_json::from_value(serde_json::Value::Array(ops)).expect("well-formed JSON Patch");
    api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .map_err(api_error)?;
    Ok(CaBundleUpdate::Patched(patched))
}

/// Keeps the configuration's `caBundle` equal to the CA's trust bundle: at start, after
/// each change of the CA, and after failures (with backoff), until `stopping`.
pub async fn keep_current(
    client: Client,
    name: String,
    mut ca: watch::Receiver<Arc<Ca>>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut retry = FIRST_RETRY;
    loop {
        let bundle = ca.borrow_and_update().trust_bundle_pem().to_string();
        let wait = match update(client.clone(), &name, &bundle).await {
            Ok(CaBundleUpdate::Patched(webhooks)) => {
                info!("set the caBundle of webhooks {webhooks:?} in {name}");
                retry = FIRST_RETRY;
                None
            }
            Ok(CaBundleUpdate::Unchanged) => {
                retry = FIRST_RETRY;
                None
            }
            Err(e) => {
                warn!("{e}; retrying in {retry:?}");
                let wait = retry;
                retry = (retry * 2).min(MAX_RETRY);
                Some(wait)
            }
        };
        let retry_after = async {
            match wait {
                Some(wait) => tokio::time::sleep(wait).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = retry_after => {}
            changed = ca.changed() => if changed.is_err() { return },
            _ = stopping.wait_for(|stop| *stop) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::*;
    use crate::kubernetes::tests::mock_api::{Answer, MockApi};

    const PATH: &str = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/outrigger-proxy-injector";
    const BUNDLE: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    /// The configuration of `k8s/webhook.yaml` as the API server returns it, with the
    /// second webhook's caBundle already `second`.
    fn configuration(second: Option<&str>) -> Answer {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let mut json = serde_json::json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "outrigger-proxy-injector", "resourceVersion": "4242"},
            "webhooks": [
                {"name": "namespaces.inject.outrigger.dev", "admissionReviewVersions": ["v1"],
                 "sideEffects": "None",
                 "clientConfig": {"service": {"name": "outrigger-control-plane", "namespace": "outrigger", "path": "/v1/admission", "port": 8443}}},
                {"name": "pods.inject.outrigger.dev", "admissionReviewVersions": ["v1"],
                 "sideEffects": "None",
                 "clientConfig": {"service": {"name": "outrigger-control-plane", "namespace": "outrigger", "path": "/v1/admission", "port": 8443}}}
            ]
        });
        if let Some(second) = second {
            json["webhooks"][1]["clientConfig"]["caBundle"] = b64(second).into();
        }
        Answer::json(200, json.to_string())
    }

    fn patches(mock: &MockApi) -> Vec<serde_json::Value> {
        mock.received()
            .into_iter()
            .filter(|r| r.method == Method::PATCH)
            .map(|r| serde_json::from_str(&r.body).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn sets_the_trust_bundle_on_the_webhooks_that_lack_it() {
        let mock = MockApi::from_fixtures(None);
        mock.on(
            Method::GET,
            PATH,
            vec![configuration(Some("an old anchor"))],
        );
        mock.on(Method::PATCH, PATH, vec![configuration(Some(BUNDLE))]);
        let outcome = update(mock.client(), "outrigger-proxy-injector", BUNDLE)
            .await
            .unwrap();
        assert_eq!(
            outcome,
            CaBundleUpdate::Patched(vec![
                "namespaces.inject.outrigger.dev".into(),
                "pods.inject.outrigger.dev".into()
            ])
        );
        let encoded = base64::engine::general_purpose::STANDARD.encode(BUNDLE);
        assert_eq!(
            patches(&mock),
            [serde_json::json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "4242"},
                {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": encoded},
                {"op": "add", "path": "/webhooks/1/clientConfig/caBundle", "value": encoded},
            ])]
        );
        let patch = mock
            .received()
            .into_iter()
            .find(|r| r.method == Method::PATCH)
            .unwrap();
        assert!(patch.uri.starts_with(PATH), "{}", patch.uri);
    }

    #[tokio::test]
    async fn a_current_bundle_is_not_written_again() {
        let mock = MockApi::from_fixtures(None);
        let both_current = {
            let mut answer = configuration(Some(BUNDLE));
            let mut json: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
            json["webhooks"][0]["clientConfig"]["caBundle"] =
                json["webhooks"][1]["clientConfig"]["caBundle"].clone();
            answer.body = json.to_string();
            answer
        };
        mock.on(Method::GET, PATH, vec![both_current]);
        let outcome = update(mock.client(), "outrigger-proxy-injector", BUNDLE)
            .await
            .unwrap();
        assert_eq!(outcome, CaBundleUpdate::Unchanged);
        assert!(patches(&mock).is_empty());
    }

    #[tokio::test]
    async fn a_missing_configuration_or_rbac_is_named() {
        let mock = MockApi::from_fixtures(None);
        mock.on(
            Method::GET,
            PATH,
            vec![Answer::json(
                403,
                r#"{"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "cannot get mutatingwebhookconfigurations", "reason": "Forbidden", "code": 403}"#,
            )],
        );
        let err = update(mock.client(), "outrigger-proxy-injector", BUNDLE)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("forbidden by RBAC"), "{err}");

        let mock = MockApi::from_fixtures(None);
        let err = update(mock.client(), "outrigger-proxy-injector", BUNDLE)
            .await
            .unwrap_err();
        assert!(matches!(err, WebhookCaError::Missing(_)), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_update_is_retried_after_a_backoff() {
        let mock = MockApi::from_fixtures(None);
        // Changed by someone else between read and patch (the test op failed), then fine.
        mock.on(
            Method::GET,
            PATH,
            vec![configuration(None), configuration(None)],
        );
        mock.on(
            Method::PATCH,
            PATH,
            vec![
                Answer::json(
                    422,
                    r#"{"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "the test operation failed", "reason": "Invalid", "code": 422}"#,
                ),
                configuration(Some(BUNDLE)),
            ],
        );
        let dir = tempfile::tempdir().unwrap();
        outrigger_certs::init_ca(dir.path(), "cluster.local").unwrap();
        let ca = Arc::new(Ca::load(dir.path()).unwrap());
        let (_ca_tx, ca_rx) = watch::channel(ca);
        let (stop, stopping) = watch::channel(false);
        let task = tokio::spawn(keep_current(
            mock.client(),
            "outrigger-proxy-injector".into(),
            ca_rx,
            stopping,
        ));
        tokio::time::sleep(FIRST_RETRY / 2).await;
        assert_eq!(patches(&mock).len(), 1, "the first attempt");
        tokio::time::sleep(FIRST_RETRY).await;
        assert_eq!(patches(&mock).len(), 2, "retried once the backoff passed");
        tokio::time::sleep(MAX_RETRY).await;
        assert_eq!(patches(&mock).len(), 2, "done once it succeeded");
        stop.send(true).unwrap();
        task.await.unwrap();
    }
}
