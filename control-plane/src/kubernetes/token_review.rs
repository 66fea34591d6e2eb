//! Bootstrap tokens in a cluster: the projected service-account token that injection
//! mounts in every pod (audience `outrigger`), checked by the API server through a
//! TokenReview. The identity is the pod's namespace and service account, as the API
//! server names the token's user: `system:serviceaccount:<namespace>:<name>`.

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::PostParams;
use kube::{Api, Client};
use outrigger_certs::SpiffeId;

use crate::inject::TOKEN_AUDIENCE;

/// Why a token did not prove an identity.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The API server looked at the token and does not vouch for it.
    #[error("service-account token refused by the API server: {0}")]
    Denied(String),
    /// The API server would not review it (RBAC), or could not be asked.
    #[error("cannot review service-account tokens: {0}")]
    Unavailable(String),
}

/// Asks the API server who a service-account token belongs to.
#[derive(Clone)]
pub struct TokenReviewer {
    reviews: Api<TokenReview>,
    trust_domain: String,
}

impl std::fmt::Debug for TokenReviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewer")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

impl TokenReviewer {
    pub fn new(client: Client, trust_domain: &str) -> Self {
        TokenReviewer {
            reviews: Api::all(client),
            trust_domain: trust_domain.to_string(),
        }
    }

    /// The identity `token` proves: its service account's SPIFFE id.
    pub async fn review(&self, token: &str) -> Result<SpiffeId, ReviewError> {
        let request = TokenReview {
            spec: TokenReviewSpec {
                token: token.trim().to_string(),
                audiences: Some(vec![TOKEN_AUDIENCE.to_string()]),
            },
            ..TokenReview::default()
        };
        let reviewed = self
            .reviews
            .create(&PostParams::default(), &request)
            .await
            .map_err(|e| match e {
                kube::Error::Api(status) if status.code == 403 => {
                    ReviewError::Unavailable(format!(
                        "forbidden by RBAC: the control plane's service account may not create \
                     tokenreviews (apply k8s/rbac.yaml): {}",
                        status.message
                    ))
                }
                other => ReviewError::Unavailable(other.to_string()),
            })?;
        let status = reviewed.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            let why = status
                .error
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "not authenticated".into());
            return Err(ReviewError::Denied(why));
        }
        // An empty list would mean the token is for the API server itself: a token any
        // pod holds must not be enough to become that pod's workload elsewhere.
        if !status
            .audiences
            .iter()
            .flatten()
            .any(|a| a == TOKEN_AUDIENCE)
        {
            return Err(ReviewError::Denied(format!(
                "the token is not for audience {TOKEN_AUDIENCE:?}"
            )));
        }
        let username = status.user.and_then(|u| u.username).unwrap_or_default();
        let Some((namespace, account)) = username
            .strip_prefix("system:serviceaccount:")
            .and_then(|rest| rest.split_once(':'))
        else {
            return Err(ReviewError::Denied(format!(
                "the token is {username:?}'s, not a service account's"
            )));
        };
        SpiffeId::workload(&self.trust_domain, namespace, account)
            .map_err(|e| ReviewError::Denied(format!("{username}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::*;
    use crate::kubernetes::tests::mock_api::{Answer, MockApi};

    const PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";

    fn reviewed(status: &str) -> Answer {
        Answer::json(
            201,
            format!(
                r#"{{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                    "metadata": {{"creationTimestamp": null}},
                    "spec": {{"token": "eyJ...", "audiences": ["outrigger"]}}, "status": {status}}}"#
            ),
        )
    }

    fn reviewer(answer: Answer) -> (MockApi, TokenReviewer) {
        let mock = MockApi::from_fixtures(None);
        mock.on(Method::POST, PATH, vec![answer]);
        let reviewer = TokenReviewer::new(mock.client(), "cluster.local");
        (mock, reviewer)
    }

    #[tokio::test]
    async fn allowed_gives_the_service_accounts_identity() {
        let (mock, reviewer) = reviewer(reviewed(
            r#"{"authenticated": true, "audiences": ["outrigger"],
                "user": {"username": "system:serviceaccount:shop:payments",
                         "uid": "4f1c", "groups": ["system:serviceaccounts", "system:serviceaccounts:shop"],
                         "extra": {"authentication.kubernetes.io/pod-name": ["payments-7d9f-a"]}}}"#,
        ));
        let id = reviewer.review("eyJhbGciOi.token\n").await.unwrap();
        assert_eq!(id.as_str(), "spiffe://cluster.local/ns/shop/sa/payments");
        let sent = &mock.received()[0];
        assert_eq!(sent.method, Method::POST);
        let body: serde_json::Value = serde_json::from_str(&sent.body).unwrap();
        assert_eq!(body["spec"]["token"], "eyJhbGciOi.token");
        assert_eq!(body["spec"]["audiences"], serde_json::json!(["outrigger"]));
    }

    #[tokio::test]
    async fn denied_says_why() {
        let (_, reviewer) = reviewer(reviewed(
            r#"{"authenticated": false, "user": {}, "error": "[invalid bearer token, token has been invalidated]"}"#,
        ));
        let err = reviewer.review("eyJ.bad").await.unwrap_err();
        assert!(matches!(err, ReviewError::Denied(_)), "{err}");
        assert!(
            err.to_string().contains("token has been invalidated"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_token_for_the_api_server_or_a_user_is_denied() {
        let (_, api_audience) = reviewer(reviewed(
            r#"{"authenticated": true, "user": {"username": "system:serviceaccount:shop:payments"}}"#,
        ));
        let err = api_audience.review("eyJ.x").await.unwrap_err();
        assert!(
            err.to_string().contains("not for audience \"outrigger\""),
            "{err}"
        );

        let (_, user) = reviewer(reviewed(
            r#"{"authenticated": true, "audiences": ["outrigger"], "user": {"username": "alice@example.com"}}"#,
        ));
        let err = user.review("eyJ.x").await.unwrap_err();
        assert!(err.to_string().contains("not a service account"), "{err}");
    }

    #[tokio::test]
    async fn refused_by_rbac_is_unavailable_not_denied() {
        let (_, reviewer) = reviewer(Answer::json(
            403,
            r#"{"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "tokenreviews.authentication.k8s.io is forbidden: User \"system:serviceaccount:outrigger:control-plane\" cannot create resource \"tokenreviews\" in API group \"authentication.k8s.io\" at the cluster scope",
                "reason": "Forbidden", "details": {"group": "authentication.k8s.io", "kind": "tokenreviews"}, "code": 403}"#,
        ));
        let err = reviewer.review("eyJ.x").await.unwrap_err();
        assert!(matches!(err, ReviewError::Unavailable(_)), "{err}");
        assert!(err.to_string().contains("forbidden by RBAC"), "{err}");
    }
}
