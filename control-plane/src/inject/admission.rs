//! The webhook's door: an AdmissionReview v1 in, an AdmissionReview out whose response
//! carries a JSONPatch (the difference between the pod as sent and the pod
//! [`inject_pod`] makes). The API server has already chosen the pod (namespace label, or
//! the pod's annotation, in the MutatingWebhookConfiguration); this code decides the rest
//! as the CLI does.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use json_patch::Patch;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use serde_json::Value;
use tracing::{info, warn};

use super::InjectConfig;
use super::pod::{Outcome, inject_pod};

/// The only review the webhook speaks (the API server sends v1 since Kubernetes 1.16).
const REVIEW_API_VERSION: &str = "admission.k8s.io/v1";
const REVIEW_KIND: &str = "AdmissionReview";

/// Answers one review, as the JSON to send back. Only a body that is not an
/// AdmissionReview is an error (the caller answers 400); a pod that cannot be injected
/// gets a response saying so.
pub fn review(body: &[u8], config: &InjectConfig) -> Result<Value, String> {
    // serde_json skips the fields it does not read without checking their UTF-8: a body
    // that is not JSON at all would otherwise be answered.
    let body = std::str::from_utf8(body)
        .map_err(|e| format!("body is not an AdmissionReview v1: not UTF-8: {e}"))?;
    let review: AdmissionReview<DynamicObject> = serde_json::from_str(body)
        .map_err(|e| format!("body is not an AdmissionReview v1: {e}"))?;
    // serde reads any `kind` and `apiVersion`, and the answer repeats them: check them,
    // so that what goes back is an AdmissionReview v1 the API server reads.
    let types = &review.types;
    if (types.api_version.as_str(), types.kind.as_str()) != (REVIEW_API_VERSION, REVIEW_KIND) {
        return Err(format!(
            "body is not an AdmissionReview v1: apiVersion {:?}, kind {:?} (expected {REVIEW_API_VERSION:?}, {REVIEW_KIND:?})",
            types.api_version, types.kind
        ));
    }
    let request: AdmissionRequest<DynamicObject> = review
        .try_into()
        .map_err(|e| format!("AdmissionReview without a request: {e}"))?;
    let mut answer = serde_json::to_value(respond(&request, config).into_review())
        .map_err(|e| format!("cannot encode the response: {e}"))?;
    // kube writes the patch's bytes as a JSON array; the API's field is Go's []byte,
    // whose JSON form is a base64 string: send that, as the API documents it.
    if let Some(patch) = answer.pointer_mut("/response/patch") {
        let bytes: Vec<u8> = serde_json::from_value(patch.take())
            .map_err(|e| format!("cannot encode the patch: {e}"))?;
        *patch = Value::String(BASE64.encode(bytes));
    }
    Ok(answer)
}

fn respond(request: &AdmissionRequest<DynamicObject>, config: &InjectConfig) -> AdmissionResponse {
    let response = AdmissionResponse::from(request);
    // Rules select CREATE of pods; anything else that reaches here is let through as is.
    if request.kind.kind != "Pod" || request.operation != Operation::Create {
        return response;
    }
    let Some(object) = request.object.as_ref() else {
        return response;
    };
    let pod_name = || {
        let meta = &object.metadata;
        let name = meta
            .name
            .as_deref()
            .or(meta.generate_name.as_deref())
            .unwrap_or("");
        format!("{}/{name}", request.namespace.as_deref().unwrap_or(""))
    };
    let original = match serde_json::to_value(object) {
        Ok(value) => value,
        Err(e) => return response.deny(format!("cannot read the pod: {e}")),
    };
    let mut pod = original.clone();
    match inject_pod(&mut pod, config) {
        Ok(Outcome::Injected) => {
            let patch = additions(&original, &pod);
            info!(pod = %pod_name(), "injected the proxy");
            match response.with_patch(patch) {
                Ok(response) => response,
                Err(e) => {
                    AdmissionResponse::from(request).deny(format!("cannot encode the patch: {e}"))
                }
            }
        }
        Ok(Outcome::AlreadyInjected | Outcome::Disabled) => response,
        Ok(Outcome::Refused(reason)) => {
            warn!(pod = %pod_name(), "not injected: {reason}");
            let mut response = response;
            response.warnings = Some(vec![format!("outrigger: not injected: {reason}")]);
            response
        }
        // The pod asked to be meshed with a setting that cannot hold: refuse it with the
        // reason rather than run it unmeshed.
        Err(e) => response.deny(format!("outrigger injection: {e}")),
    }
}

/// The patch from `original` to `injected`, as the additions injection makes: our init
/// containers in front, our volumes at the end. Short and readable in the API server's
/// audit log, and it never rewrites the pod's own entries; anything else falls back to a
/// full diff, which is as correct, only longer.
fn additions(original: &Value, injected: &Value) -> Patch {
    let list = |pod: &Value, key: &str| pod["spec"].get(key).and_then(Value::as_array).cloned();
    let (Some(new_init), Some(new_volumes)) =
        (list(injected, "initContainers"), list(injected, "volumes"))
    else {
        return json_patch::diff(original, injected);
    };
    let old_init = list(original, "initContainers").unwrap_or_default();
    let old_volumes = list(original, "volumes").unwrap_or_default();
    let added_init = new_init.len().saturating_sub(old_init.len());
    let rest_same = new_init[added_init..] == old_init[..]
        && new_volumes[..old_volumes.len().min(new_volumes.len())] == old_volumes[..]
        && {
            let mut without = injected.clone();
            without["spec"]["initContainers"] = Value::Array(old_init.clone());
            without["spec"]["volumes"] = Value::Array(old_volumes.clone());
            let spec = |pod: &Value| {
                let mut spec = pod["spec"].clone();
                if let Some(map) = spec.as_object_mut() {
                    map.remove("initContainers");
                    map.remove("volumes");
                }
                spec
            };
            spec(&without) == spec(original) && without["metadata"] == original["metadata"]
        };
    if !rest_same {
        return json_patch::diff(original, injected);
    }
    let mut ops = Vec::new();
    let mut add = |path: String, value: Value| {
        ops.push(serde_json::json!({"op": "add", "path": path, "value": value}));
    };
    if original["spec"]
        .get("initContainers")
        .is_none_or(Value::is_null)
    {
        add("/spec/initContainers".into(), Value::Array(new_init));
    } else {
        for (index, container) in new_init.into_iter().take(added_init).enumerate() {
            add(format!("/spec/initContainers/{index}"), container);
        }
    }
    let added_volumes = new_volumes[old_volumes.len()..].to_vec();
    if original["spec"].get("volumes").is_none_or(Value::is_null) {
        add("/spec/volumes".into(), Value::Array(added_volumes));
    } else {
        for volume in added_volumes {
            add("/spec/volumes/-".into(), volume);
        }
    }
    serde_json::from_value(Value::Array(ops)).expect("add operations are a valid JSONPatch")
}

/// The pod of `request` (an AdmissionReview as JSON) with the patch of `response` (the
/// answer, as JSON) applied: what the API server would store. For tests, and for checking
/// a recorded review by hand.
pub fn patched_pod(request: &Value, response: &Value) -> Result<Value, String> {
    let mut pod = request
        .pointer("/request/object")
        .cloned()
        .ok_or("the review has no request.object")?;
    if let Some(patch) = response.pointer("/response/patch").and_then(Value::as_str) {
        let bytes = BASE64
            .decode(patch)
            .map_err(|e| format!("patch is not base64: {e}"))?;
        let patch: Patch =
            serde_json::from_slice(&bytes).map_err(|e| format!("not a JSONPatch: {e}"))?;
        json_patch::patch(&mut pod, &patch).map_err(|e| e.to_string())?;
    }
    Ok(pod)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn review_of(api_version: &str, kind: &str) -> Vec<u8> {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"containers": [{"name": "app", "image": "app:1"}]}
        });
        let review = json!({
            "apiVersion": api_version, "kind": kind,
            "request": {
                "uid": "b7c2", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "shop", "operation": "CREATE",
                "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
                "object": pod
            }
        });
        serde_json::to_vec(&review).expect("encodes")
    }

    /// Found by the `admission_review` fuzz target: any `kind` and `apiVersion` were
    /// read, and repeated in the answer, which the API server would not read.
    #[test]
    fn only_an_admission_review_v1_is_answered() {
        let config = InjectConfig::default();
        let answer = review(
            &review_of("admission.k8s.io/v1", "AdmissionReview"),
            &config,
        )
        .expect("answered");
        assert_eq!(answer["kind"], "AdmissionReview");
        assert_eq!(answer["response"]["uid"], "b7c2");
        assert!(answer["response"]["patch"].is_string(), "{answer}");
        // Found by the fuzz target too: a key of the pod that is not UTF-8.
        let body = review_of("admission.k8s.io/v1", "AdmissionReview");
        let at = body.windows(4).position(|w| w == b"spec").expect("a spec");
        let mut bad_utf8 = body.clone();
        bad_utf8[at + 1..at + 3].copy_from_slice(b"\x8b\x8c");
        let err = review(&bad_utf8, &config).unwrap_err();
        assert!(err.contains("not UTF-8"), "{err}");
        for (api_version, kind) in [
            ("admission.k8s.io/v1", "AdmiscionReview"),
            ("admission.k8s.io/v1beta1", "AdmissionReview"),
            ("", ""),
        ] {
            let err = review(&review_of(api_version, kind), &config).unwrap_err();
            assert!(err.contains("not an AdmissionReview v1"), "{err}");
        }
    }
}
