//! Injection's golden files (`tests/fixtures/inject/`, see its README): the CLI's output
//! for each input, idempotence, and the webhook making the same pod as the CLI.

use std::path::{Path, PathBuf};

use outrigger_control_plane::inject::{self, InjectConfig, admission};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/inject")
}

fn read(name: &str) -> String {
    let path = fixtures().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn inputs() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".in.yaml").map(str::to_string))
        .collect();
    names.sort();
    names
}

#[test]
fn each_input_injects_to_its_reviewed_output() {
    let names = inputs();
    for expected in [
        "deployment",
        "hostnetwork",
        "injected-pod",
        "jobs",
        "list",
        "statefulset",
    ] {
        assert!(names.iter().any(|n| n == expected), "missing {expected}");
    }
    for name in names {
        let injected =
            inject::inject_manifests(&read(&format!("{name}.in.yaml")), &InjectConfig::default())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            injected.yaml == read(&format!("{name}.out.yaml")),
            "{name}.out.yaml differs from what injection makes; see tests/fixtures/inject/README.md \
             to regenerate, then review the diff:\n{}",
            injected.yaml
        );
    }
}

#[test]
fn injecting_twice_changes_nothing() {
    for name in inputs() {
        let once = read(&format!("{name}.out.yaml"));
        let twice = inject::inject_manifests(&once, &InjectConfig::default()).unwrap();
        assert_eq!(twice.yaml, once, "{name}");
    }
    let pod = read("injected-pod.in.yaml");
    assert_eq!(read("injected-pod.out.yaml"), pod);
}

#[test]
fn host_network_is_refused_with_the_document_unchanged() {
    let input = read("hostnetwork.in.yaml");
    let injected = inject::inject_manifests(&input, &InjectConfig::default()).unwrap();
    assert_eq!(injected.yaml, input);
    assert_eq!(injected.notices.len(), 1);
    let line = injected.notices[0].to_string();
    assert!(line.contains("Pod monitoring/node-agent"), "{line}");
    assert!(line.contains("hostNetwork"), "{line}");
}

#[test]
fn bad_input_is_one_error_naming_the_document() {
    let config = InjectConfig::default();
    let cases = [
        ("a: [1, 2\n", "document 1: not YAML"),
        ("- just\n- a list\n", "document 1: not a Kubernetes object"),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\nname: web\nimage: nginx\n",
            "document 2: not a Kubernetes object",
        ),
        (
            "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: web}\nspec: {}\n",
            "document 1 (Deployment web): apiVersion \"extensions/v1beta1\" is not supported for Deployment (expected apps/v1)",
        ),
        (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 1}\n",
            "document 1 (Deployment web): spec.template: missing",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {outrigger.dev/skip-inbound-ports: http}\nspec:\n  containers: [{name: a, image: b}]\n",
            "document 1 (Pod p): annotation outrigger.dev/skip-inbound-ports: \"http\" is not a port",
        ),
    ];
    for (input, expected) in cases {
        let error = inject::inject_manifests(input, &config)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(expected),
            "{error:?} does not start with {expected:?}"
        );
    }
    // Kinds this code does not inject pass through, whatever their apiVersion.
    let crd = "apiVersion: outrigger.dev/v1alpha1\nkind: MeshService\nmetadata: {name: a}\nspec: {identity: x}\n";
    assert_eq!(inject::inject_manifests(crd, &config).unwrap().yaml, crd);
}

/// A recorded AdmissionReview (a ReplicaSet's pod, with the API server's defaults): the
/// webhook's patch, applied with json-patch, makes the pod the CLI makes from it.
#[test]
fn admission_review_patch_equals_the_cli() {
    let body = read("admission-review.json");
    let request: Value = serde_json::from_str(&body).unwrap();
    let config = InjectConfig::default();
    let answer = admission::review(body.as_bytes(), &config).unwrap();
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    let response = &answer["response"];
    assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
    assert!(response["patch"].is_string(), "base64 patch: {response}");
    // Additions only: two init containers in front, three volumes at the end.
    let bytes = base64_decode(response["patch"].as_str().unwrap());
    let ops: Vec<Value> = serde_json::from_slice(&bytes).unwrap();
    let paths: Vec<&str> = ops.iter().map(|op| op["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "/spec/initContainers/0",
            "/spec/initContainers/1",
            "/spec/volumes/-",
            "/spec/volumes/-",
            "/spec/volumes/-"
        ]
    );
    assert!(ops.iter().all(|op| op["op"] == "add"));
    let patched = admission::patched_pod(&request, &answer).unwrap();

    let pod = request["request"]["object"].clone();
    let pod_yaml = serde_saphyr::to_string(&pod).unwrap();
    let cli = inject::inject_manifests(&pod_yaml, &config).unwrap();
    let cli_pod: Value = serde_saphyr::from_str(&cli.yaml).unwrap();
    assert_eq!(patched, cli_pod);
    let init: Vec<&str> = patched["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(init, ["outrigger-init", "outrigger-proxy", "migrate"]);
}

/// Without volumes or init containers of its own, the patch adds the lists whole.
#[test]
fn admission_patch_adds_missing_lists() {
    let mut request: Value = serde_json::from_str(&read("admission-review.json")).unwrap();
    let spec = &mut request["request"]["object"]["spec"];
    spec.as_object_mut().unwrap().remove("initContainers");
    spec.as_object_mut().unwrap().remove("volumes");
    let answer =
        admission::review(request.to_string().as_bytes(), &InjectConfig::default()).unwrap();
    let patched = admission::patched_pod(&request, &answer).unwrap();
    assert_eq!(
        patched["spec"]["initContainers"].as_array().unwrap().len(),
        2
    );
    assert_eq!(patched["spec"]["volumes"].as_array().unwrap().len(), 3);
    assert_eq!(
        patched["spec"]["containers"],
        request["request"]["object"]["spec"]["containers"]
    );
}

/// What the webhook answers for pods it must leave alone.
#[test]
fn admission_leaves_disabled_injected_and_host_network_pods_alone() {
    let body: Value = serde_json::from_str(&read("admission-review.json")).unwrap();
    let with_pod = |edit: &dyn Fn(&mut Value)| {
        let mut review = body.clone();
        edit(&mut review["request"]["object"]);
        let answer =
            admission::review(review.to_string().as_bytes(), &InjectConfig::default()).unwrap();
        answer["response"].clone()
    };
    let disabled = with_pod(&|pod| {
        pod["metadata"]["annotations"]["outrigger.dev/inject"] = "disabled".into();
    });
    assert_eq!(disabled["allowed"], true);
    assert!(
        disabled.get("patch").is_none_or(Value::is_null),
        "{disabled}"
    );

    let host = with_pod(&|pod| pod["spec"]["hostNetwork"] = true.into());
    assert_eq!(host["allowed"], true);
    assert!(host.get("patch").is_none_or(Value::is_null), "{host}");
    assert!(
        host["warnings"][0]
            .as_str()
            .unwrap()
            .contains("hostNetwork"),
        "{host}"
    );

    let bad = with_pod(&|pod| {
        pod["metadata"]["annotations"]["outrigger.dev/proxy-memory-limit"] = "lots".into();
    });
    assert_eq!(bad["allowed"], false);
    assert!(
        bad["status"]["message"]
            .as_str()
            .unwrap()
            .contains("proxy-memory-limit"),
        "{bad}"
    );

    assert!(admission::review(b"{\"kind\": \"Pod\"}", &InjectConfig::default()).is_err());
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}
