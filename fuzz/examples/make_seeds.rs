//! Writes the generated part of the seed corpus (`fuzz/corpus/<target>/seed-*`): real
//! CSRs, tokens, watch frames and connection openings, made by the code that makes them
//! in the mesh. The policy and admission seeds are the repository's own example files,
//! copied. Run it again when a format changes:
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example make_seeds

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use outrigger_api::{
    Authorization, AuthorizationDefault, AuthorizationRule, EndpointView, Protocol,
    ServerPolicySpec, ServerPolicyUpdate, ServiceRef, ServiceView, Snapshot, SnapshotDelta,
    TargetRef, TrafficPolicySpec, WatchEvent,
};
use outrigger_certs::{SpiffeId, WorkloadKey};
use outrigger_control_plane::inject::InjectConfig;
use outrigger_control_plane::inject::admission::{patched_pod, review};
use outrigger_control_plane::token::{TOKEN_KEY_LEN, TokenKey};
use serde_json::{Value, json};

fn main() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo = fuzz.parent().expect("fuzz/ is in the repository");
    let dir = tempfile::tempdir().expect("temp dir");
    let paths = outrigger_certs::init_ca(dir.path(), "cluster.local").expect("CA");
    let anchor = fs::read_to_string(paths.trust_anchor()).expect("anchor");
    let id = |short: &str| SpiffeId::from_short("cluster.local", short).expect("id");

    let policy = Seeds::new(fuzz, "policy_yaml");
    for file in [
        "k8s/examples/shop/mesh.yaml",
        "tests/fixtures/design-example.yaml",
        "tests/fixtures/broken/shop/traffic.yaml",
        "tests/fixtures/broken/server.yaml",
    ] {
        let name = file.rsplit('/').next().expect("a file name");
        policy.write(name, &fs::read(repo.join(file)).expect("example policy"));
    }

    let csr = Seeds::new(fuzz, "csr");
    let key = WorkloadKey::generate().expect("key");
    // The CSR asks for another identity than the one proven: the CA must not care.
    let pem = key.csr_pem(&id("shop/admin")).expect("CSR");
    csr.write("csr.pem", pem.as_bytes());
    let body = json!({"csr": key.csr_pem_without_identity().expect("CSR"), "token": "v1.x.y"});
    csr.write("request.json", body.to_string().as_bytes());

    let tokens = Seeds::new(fuzz, "bootstrap_token");
    let signer = TokenKey::from_bytes(&[7u8; TOKEN_KEY_LEN], "cluster.local");
    let far = UNIX_EPOCH + Duration::from_secs(4_102_444_800); // 2100
    let past = UNIX_EPOCH + Duration::from_secs(1_700_000_000); // 2023
    tokens.write("valid", signer.mint(&id("shop/orders"), far).as_bytes());
    tokens.write("expired", signer.mint(&id("shop/orders"), past).as_bytes());
    let foreign = SpiffeId::workload("other.org", "shop", "orders").expect("id");
    tokens.write("foreign", signer.mint(&foreign, far).as_bytes());
    // As claims: the target signs these bytes itself.
    let claims = json!({"sub": id("shop/orders").to_string(), "exp": 4_102_444_800u64, "iat": 0});
    tokens.write("claims.json", claims.to_string().as_bytes());

    let watch = Seeds::new(fuzz, "watch_stream");
    let service = |name: &str, policy: Option<TrafficPolicySpec>| ServiceView {
        name: name.into(),
        namespace: "shop".into(),
        identity: id(&format!("shop/{name}")).to_string(),
        protocol: Protocol::Http,
        addresses: vec!["10.96.0.12:8080".into()],
        endpoints: vec![EndpointView {
            address: "127.0.0.1:4143".into(),
        }],
        traffic_policy: policy,
    };
    let traffic: TrafficPolicySpec = serde_json::from_value(json!({
        "targetRef": {"kind": "MeshService", "name": "payments"},
        "timeouts": {"request": "2s"},
        "retries": {"attempts": 2, "retryOn": ["5xx"], "budget": {"ratio": 0.2, "minPerSecond": 10, "window": "10s"}},
        "routes": [{"match": {"pathPrefix": "/charge", "methods": ["POST"]}, "retries": {"attempts": 0}}]
    }))
    .expect("a traffic policy");
    let server = ServerPolicySpec {
        target_ref: TargetRef {
            kind: "MeshService".into(),
            name: "payments".into(),
        },
        authorization: Some(Authorization {
            default: AuthorizationDefault::Deny,
            rules: vec![AuthorizationRule {
                from: vec!["spiffe://cluster.local/ns/shop/sa/*".into()],
                matches: None,
            }],
        }),
        ..ServerPolicySpec::default()
    };
    let full = WatchEvent::Full(Snapshot {
        version: 1,
        trust_bundle: anchor.clone(),
        services: vec![service("payments", Some(traffic)), service("orders", None)],
        server_policy: Some(server),
    });
    let delta = WatchEvent::Delta(SnapshotDelta {
        version: 2,
        base: 1,
        upserted: vec![service("inventory", None)],
        removed: vec![ServiceRef {
            namespace: "shop".into(),
            name: "orders".into(),
        }],
        server_policy: Some(ServerPolicyUpdate { spec: None }),
        ..SnapshotDelta::default()
    });
    let gap = WatchEvent::Delta(SnapshotDelta {
        version: 9,
        base: 7,
        ..SnapshotDelta::default()
    });
    // The first byte is the frame size the target cuts the stream into.
    watch.write("full-delta", &lines(7, &[&full, &delta]));
    watch.write("gap", &lines(0, &[&full, &gap]));

    let authority = Seeds::new(fuzz, "authority");
    authority.write("host", b"/charge?x=1\nPayments.Shop.svc.cluster.local:8080");
    authority.write("absolute", b"http://orders:80/list");
    authority.write("ipv6", b"/\n[::1]:4140");

    let durations = Seeds::new(fuzz, "durations");
    for text in ["250ms", "1h30m", "0s", "99999999S", "100m"] {
        durations.write(text, text.as_bytes());
    }

    let admission = Seeds::new(fuzz, "admission_review");
    let recorded = fs::read(repo.join("tests/fixtures/inject/admission-review.json"))
        .expect("recorded review");
    admission.write("review.json", &recorded);
    let request: Value = serde_json::from_slice(&recorded).expect("JSON");
    let answer = review(&recorded, &InjectConfig::default()).expect("answered");
    let mut injected = request.clone();
    injected["request"]["object"] = patched_pod(&request, &answer).expect("patch applies");
    admission.write("injected.json", injected.to_string().as_bytes());

    let opaque = Seeds::new(fuzz, "opaque_tcp");
    // The first byte is the packet size the target cuts the bytes into.
    opaque.write("header", b"\x02\x01\x15\x38select 1;");
    opaque.write("http1", b"\x03GET / HTTP/1.1\r\nHost: orders\r\n\r\n");
    opaque.write(
        "http2",
        b"\x05PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00",
    );
    opaque.write("tls", b"\x00\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03");
}

/// One event per line, after the frame-size byte.
fn lines(frame: u8, events: &[&WatchEvent]) -> Vec<u8> {
    let mut bytes = vec![frame];
    for event in events {
        bytes.extend_from_slice(&serde_json::to_vec(event).expect("encodes"));
        bytes.push(b'\n');
    }
    bytes
}

/// The seed directory of one target.
struct Seeds(PathBuf);

impl Seeds {
    fn new(fuzz: &Path, target: &str) -> Self {
        let dir = fuzz.join("corpus").join(target);
        fs::create_dir_all(&dir).expect("corpus dir");
        Seeds(dir)
    }

    fn write(&self, name: &str, bytes: &[u8]) {
        fs::write(self.0.join(format!("seed-{name}")), bytes).expect("seed written");
    }
}
