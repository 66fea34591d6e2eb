//! The mutating webhook's body, `POST /v1/admission`, as the control plane answers it.
//! Whatever the body, no panic; and when a pod is injected, the JSONPatch sent back must
//! apply to the pod as sent (else the API server fails the pod's creation), and the pod
//! it makes must not be injected twice.

#![no_main]

use libfuzzer_sys::fuzz_target;
use outrigger_control_plane::inject::InjectConfig;
use outrigger_control_plane::inject::admission::{patched_pod, review};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let config = InjectConfig::default();
    let Ok(answer) = review(data, &config) else {
        return;
    };
    let request: Value = serde_json::from_slice(data).expect("a review that was read is JSON");
    let response = &answer["response"];
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(
        response["uid"], request["request"]["uid"],
        "answers the request it read"
    );
    if response["allowed"] != true || response.get("patch").is_none() {
        return;
    }
    let pod = patched_pod(&request, &answer).expect("the patch applies to the pod as sent");
    let mut again = request.clone();
    again["request"]["object"] = pod;
    let body = serde_json::to_vec(&again).expect("encodes");
    let second = review(&body, &config).expect("the injected pod is still a review");
    assert_eq!(second["response"]["allowed"], true, "{second}");
    assert!(
        second["response"].get("patch").is_none(),
        "injected twice: {second}"
    );
});
