//! The CA in a Secret (`outrigger/outrigger-ca`), so that every replica signs with the
//! same CA and losing one loses nothing. The first replica to start makes the CA (as
//! `outrigger ca init` would) and creates the Secret; if two start at once, the API
//! server lets one create win (409 Conflict for the other), and the loser takes the
//! winner's. Each replica then copies the Secret into its data dir, where the rest of
//! the control plane loads a CA as it does on a laptop.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use outrigger_certs::{CaPaths, write_atomically};
use tracing::info;

use crate::ca_init;

/// The files of a data dir's `ca/` that the Secret holds, and whether each is private.
const FILES: [(&str, bool); 6] = [
    ("trust-anchor.pem", false),
    ("trust-anchor.key", true),
    ("issuer.pem", false),
    ("issuer.key", true),
    ("trust-domain", false),
    ("token.key", true),
];

/// Where the CA came from.
#[derive(Debug, PartialEq, Eq)]
pub enum CaOrigin {
    /// This replica made it and created the Secret.
    Created,
    /// The Secret was there (or another replica created it first).
    Reused,
}

#[derive(Debug, thiserror::Error)]
pub enum CaSecretError {
    #[error("reading or creating the CA Secret {namespace}/{name}: {reason}")]
    Api {
        namespace: String,
        name: String,
        reason: String,
    },
    #[error("the CA Secret {0} has no {1:?}: it was not made by Outrigger, or was edited")]
    Incomplete(String, &'static str),
    #[error("making a new CA: {0}")]
    Init(#[from] ca_init::InitError),
    #[error("copying the CA Secret into the data dir: {0}")]
    Write(#[from] outrigger_certs::Error),
}

/// Makes sure the Secret `namespace/name` holds a CA (made for `trust_domain` if it
/// must be made), and copies it into `data_dir/ca/`.
pub async fn ensure(
    client: Client,
    namespace: &str,
    name: &str,
    data_dir: &Path,
    trust_domain: &str,
) -> Result<CaOrigin, CaSecretError> {
    let secrets: Api<Secret> = Api::namespaced(client, namespace);
    let api_error = |e: kube::Error| CaSecretError::Api {
        namespace: namespace.to_string(),
        name: name.to_string(),
        reason: match e {
            kube::Error::Api(s) if s.code == 403 => {
                format!("forbidden by RBAC (apply k8s/rbac.yaml): {}", s.message)
            }
            other => other.to_string(),
        },
    };
    if let Some(secret) = secrets.get_opt(name).await.map_err(api_error)? {
        copy_out(&secret, name, data_dir)?;
        info!("using the CA in Secret {namespace}/{name}");
        return Ok(CaOrigin::Reused);
    }
    let secret = new_ca_secret(name, trust_domain)?;
    match secrets.create(&PostParams::default(), &secret).await {
        // What was created is what was sent.
        Ok(_) => {
            copy_out(&secret, name, data_dir)?;
            info!("made a CA for {trust_domain} and stored it in Secret {namespace}/{name}");
            Ok(CaOrigin::Created)
        }
        // Another replica created it between our get and our create: theirs wins.
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let winner = secrets.get(name).await.map_err(api_error)?;
            copy_out(&winner, name, data_dir)?;
            info!("another replica made the CA first: using Secret {namespace}/{name}");
            Ok(CaOrigin::Reused)
        }
        Err(e) => Err(api_error(e)),
    }
}

/// A new CA (in a scratch dir, removed after) as a Secret's data.
fn new_ca_secret(name: &str, trust_domain: &str) -> Result<Secret, CaSecretError> {
    let scratch = tempfile::tempdir().map_err(|e| {
        CaSecretError::Write(outrigger_certs::Error::Io {
            path: std::env::temp_dir(),
            source: e,
        })
    })?;
    let paths = ca_init::init(scratch.path(), trust_domain)?;
    let mut data = BTreeMap::new();
    for (file, _) in FILES {
        let path = paths.dir().join(file);
        let bytes = std::fs::read(&path)
            .map_err(|e| CaSecretError::Write(outrigger_certs::Error::Io { path, source: e }))?;
        data.insert(file.to_string(), ByteString(bytes));
    }
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/part-of".to_string(),
                "outrigger".to_string(),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Secret::default()
    })
}

/// Writes the Secret's files into `data_dir/ca/` (keys private, each atomically).
fn copy_out(secret: &Secret, name: &str, data_dir: &Path) -> Result<(), CaSecretError> {
    let paths = CaPaths::new(data_dir);
    std::fs::create_dir_all(paths.dir()).map_err(|e| {
        CaSecretError::Write(outrigger_certs::Error::Io {
            path: paths.dir().to_path_buf(),
            source: e,
        })
    })?;
    let data = secret.data.as_ref();
    for (file, private) in FILES {
        let bytes = data
            .and_then(|d| d.get(file))
            .ok_or(CaSecretError::Incomplete(name.to_string(), file))?;
        let mode = if private { 0o600 } else { 0o644 };
        write_atomically(&paths.dir().join(file), &bytes.0, mode)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use base64::Engine as _;
    use http::Method;
    use outrigger_certs::Ca;

    use super::*;
    use crate::kubernetes::tests::mock_api::{Answer, MockApi};

    const SECRET: &str = "/api/v1/namespaces/outrigger/secrets/outrigger-ca";
    const SECRETS: &str = "/api/v1/namespaces/outrigger/secrets";

    fn status(code: u16, reason: &str) -> Answer {
        Answer::json(
            code,
            format!(
                r#"{{"kind": "Status", "apiVersion": "v1", "metadata": {{}}, "status": "Failure",
                    "message": "secrets \"outrigger-ca\" {reason}", "reason": "{reason}", "code": {code}}}"#
            ),
        )
    }

    /// Another replica's CA, as the API server would send its Secret.
    fn winners_secret() -> (Answer, Vec<u8>) {
        let secret = new_ca_secret("outrigger-ca", "cluster.local").unwrap();
        let anchor = secret.data.as_ref().unwrap()["trust-anchor.pem"].0.clone();
        let mut json = serde_json::to_value(&secret).unwrap();
        json["apiVersion"] = "v1".into();
        json["kind"] = "Secret".into();
        json["metadata"]["namespace"] = "outrigger".into();
        json["metadata"]["resourceVersion"] = "7001".into();
        (Answer::json(200, json.to_string()), anchor)
    }

    async fn ensure_with(mock: &MockApi, data_dir: &Path) -> CaOrigin {
        ensure(
            mock.client(),
            "outrigger",
            "outrigger-ca",
            data_dir,
            "cluster.local",
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn the_first_start_makes_the_ca_and_stores_it() {
        let mock = MockApi::from_fixtures(None);
        mock.on(Method::GET, SECRET, vec![status(404, "NotFound")]);
        mock.on(
            Method::POST,
            SECRETS,
            vec![Answer::json(
                201,
                r#"{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "outrigger-ca"}}"#,
            )],
        );
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ensure_with(&mock, dir.path()).await, CaOrigin::Created);

        let ca = Ca::load(dir.path()).expect("a usable CA in the data dir");
        assert_eq!(ca.trust_domain(), "cluster.local");
        let key_mode = std::fs::metadata(dir.path().join("ca/issuer.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600);
        // The Secret holds the very CA this replica uses.
        let created = mock
            .received()
            .into_iter()
            .find(|r| r.method == Method::POST)
            .unwrap();
        let body: serde_json::Value = serde_json::from_str(&created.body).unwrap();
        let stored = base64::engine::general_purpose::STANDARD
            .decode(body["data"]["trust-anchor.pem"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            stored,
            std::fs::read(dir.path().join("ca/trust-anchor.pem")).unwrap()
        );
        assert_eq!(body["data"].as_object().unwrap().len(), FILES.len());
    }

    #[tokio::test]
    async fn a_later_start_reuses_the_secret() {
        let mock = MockApi::from_fixtures(None);
        let (secret, anchor) = winners_secret();
        mock.on(Method::GET, SECRET, vec![secret]);
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ensure_with(&mock, dir.path()).await, CaOrigin::Reused);
        assert_eq!(
            std::fs::read(dir.path().join("ca/trust-anchor.pem")).unwrap(),
            anchor
        );
        assert!(
            mock.received().iter().all(|r| r.method == Method::GET),
            "nothing created"
        );
    }

    #[tokio::test]
    async fn losing_the_create_race_takes_the_winners_ca() {
        let mock = MockApi::from_fixtures(None);
        let (secret, anchor) = winners_secret();
        // Missing when looked at, already there when created: the other replica won.
        mock.on(Method::GET, SECRET, vec![status(404, "NotFound"), secret]);
        mock.on(Method::POST, SECRETS, vec![status(409, "AlreadyExists")]);
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ensure_with(&mock, dir.path()).await, CaOrigin::Reused);
        assert_eq!(
            std::fs::read(dir.path().join("ca/trust-anchor.pem")).unwrap(),
            anchor
        );
        Ca::load(dir.path()).expect("the winner's CA loads");
    }

    #[tokio::test]
    async fn a_secret_missing_a_file_is_named() {
        let mock = MockApi::from_fixtures(None);
        mock.on(Method::GET, SECRET, vec![Answer::json(200, r#"{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "outrigger-ca"}, "data": {"issuer.pem": "eA=="}}"#)]);
        let dir = tempfile::tempdir().unwrap();
        let err = ensure(
            mock.client(),
            "outrigger",
            "outrigger-ca",
            dir.path(),
            "cluster.local",
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("has no \"trust-anchor.pem\""), "{err}");
    }
}
