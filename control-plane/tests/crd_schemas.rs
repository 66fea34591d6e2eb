//! The CRDs' schemas (as generated, the ones `kubectl apply` installs) accept every
//! example resource and refuse broken ones. Checked with a JSON-schema validator, as the
//! API server would check them, with its strict field validation (kubectl's default)
//! emulated: an object with declared properties refuses any other.

use std::path::Path;

use serde_json::{Value, json};

/// Each kind's schema, made strict.
fn schemas() -> Vec<(String, jsonschema::Validator)> {
    outrigger_api::crd::crds()
        .into_iter()
        .map(|(_, crd)| {
            let kind = crd.spec.names.kind.clone();
            let mut schema =
                serde_json::to_value(&crd.spec.versions[0].schema).unwrap()["openAPIV3Schema"]
                    .take();
            // What the API server adds to every custom resource's schema.
            schema["properties"]["apiVersion"] = json!({"type": "string"});
            schema["properties"]["kind"] = json!({"type": "string"});
            schema["properties"]["metadata"] = json!({"type": "object"});
            strict(&mut schema);
            let validator = jsonschema::validator_for(&schema).expect("a valid JSON schema");
            (kind, validator)
        })
        .collect()
}

/// `additionalProperties: false` wherever properties are declared, except in
/// `metadata` (the API server's own type, not ours).
fn strict(schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if object.contains_key("properties") && !object.contains_key("additionalProperties") {
        object.insert("additionalProperties".into(), false.into());
    }
    // `nullable: true` is OpenAPI's; JSON schema spells it as a second type.
    if object.remove("nullable") == Some(Value::Bool(true))
        && let Some(Value::String(kind)) = object.get("type").cloned()
    {
        object.insert("type".into(), json!([kind, "null"]));
    }
    for (_, child) in object.iter_mut() {
        match child {
            Value::Object(_) => strict(child),
            Value::Array(items) => items.iter_mut().for_each(strict),
            _ => {}
        }
    }
    if let Some(properties) = object.get_mut("properties").and_then(Value::as_object_mut) {
        properties.values_mut().for_each(strict);
    }
}

/// The problems `schemas` finds with one resource (by its kind).
fn problems(schemas: &[(String, jsonschema::Validator)], resource: &Value) -> Vec<String> {
    let kind = resource["kind"].as_str().unwrap_or_default();
    let (_, validator) = schemas
        .iter()
        .find(|(k, _)| k == kind)
        .unwrap_or_else(|| panic!("no CRD for kind {kind:?}"));
    validator
        .iter_errors(resource)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

fn resources_in(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    text.split("\n---")
        .map(|doc| serde_saphyr::from_str::<Value>(doc).unwrap())
        .filter(|doc| doc["apiVersion"] == "outrigger.dev/v1alpha1")
        .collect()
}

#[test]
fn every_example_resource_is_accepted() {
    let schemas = schemas();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut checked = 0;
    for file in [
        "k8s/examples/shop/mesh.yaml",
        "tests/fixtures/design-example.yaml",
    ] {
        for resource in resources_in(&root.join(file)) {
            let found = problems(&schemas, &resource);
            assert!(
                found.is_empty(),
                "{file}: {}: {found:#?}",
                resource["metadata"]
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} resources found");
}

#[test]
fn broken_resources_are_refused() {
    let schemas = schemas();
    let service = json!({
        "apiVersion": "outrigger.dev/v1alpha1",
        "kind": "MeshService",
        "metadata": {"name": "payments", "namespace": "shop"},
        "spec": {"identity": "spiffe://cluster.local/ns/shop/sa/payments", "protocol": "http"},
    });
    assert!(problems(&schemas, &service).is_empty());
    let policy = json!({
        "apiVersion": "outrigger.dev/v1alpha1",
        "kind": "TrafficPolicy",
        "metadata": {"name": "payments"},
        "spec": {"targetRef": {"kind": "MeshService", "name": "payments"},
                 "retries": {"attempts": 2, "perTryTimeout": "500ms"}},
    });
    assert!(problems(&schemas, &policy).is_empty());

    let broken: [(&Value, &str, Value); 8] = [
        (&service, "/spec/protocol", json!("udp")),
        (&service, "/spec/identity", Value::Null),
        (&service, "/spec/identty", json!("typo")),
        (
            &service,
            "/spec/endpoints",
            json!([{"address": "10.0.0.1:80", "weight": 3}]),
        ),
        (&policy, "/spec/retries/perTryTimeout", json!("500")),
        (&policy, "/spec/retries/attempts", json!(-1)),
        (&policy, "/spec/timeouts", json!({"request": 5})),
        (&policy, "/spec/loadBalancer", json!("random")),
    ];
    for (base, pointer, value) in broken {
        let mut resource = base.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let target = resource
            .pointer_mut(parent)
            .unwrap()
            .as_object_mut()
            .unwrap();
        if value.is_null() {
            target.remove(key);
        } else {
            target.insert(key.to_string(), value.clone());
        }
        let found = problems(&schemas, &resource);
        assert!(!found.is_empty(), "{pointer} = {value} was accepted");
    }
    // A status the control plane writes is part of the schema.
    let mut with_status = service.clone();
    with_status["status"] = json!({"version": 7, "proxiesConverged": 2, "proxies": 3, "converged": "2/3", "endpoints": 2});
    assert!(problems(&schemas, &with_status).is_empty());
}
