//! The authority the outbound side routes by (the URI's, else `Host`), its lookup in the
//! mesh table, and the head rewritten for the peer. A request that found its service
//! must not then fail on its own authority, and names must match in any letter case.

#![no_main]

use std::sync::{LazyLock, Mutex};

use http::{HeaderValue, Request, Uri, Version};
use libfuzzer_sys::fuzz_target;
use outrigger_proxy::fuzzing::{WatchedMesh, outbound_authority, prepare_for_peer};

/// A mesh with services an app may name in several ways (and a name in two namespaces).
static MESH: LazyLock<Mutex<WatchedMesh>> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("temp dir");
    let paths = outrigger_certs::init_ca(dir.path(), "cluster.local").expect("CA");
    let anchor = std::fs::read_to_string(paths.trust_anchor()).expect("anchor");
    let mut mesh = WatchedMesh::new(&anchor, "cluster.local").expect("proxy");
    let service = |name: &str, namespace: &str| {
        serde_json::json!({
            "name": name, "namespace": namespace,
            "identity": format!("spiffe://cluster.local/ns/{namespace}/sa/{name}"),
            "protocol": "http", "endpoints": [{"address": "127.0.0.1:4143"}]
        })
    };
    let full = serde_json::json!({"full": {
        "version": 1, "trust_bundle": anchor,
        "services": [
            service("payments", "shop"),
            service("orders", "shop"),
            service("payments", "billing"),
        ],
    }});
    mesh.push(format!("{full}\n").as_bytes()).expect("applies");
    assert_eq!(mesh.services(), 3);
    Mutex::new(mesh)
});

fuzz_target!(|data: &[u8]| {
    // A request target, and after the first newline, if any, a Host header's bytes.
    let (target, host) = match data.iter().position(|&b| b == b'\n') {
        Some(newline) => (&data[..newline], Some(&data[newline + 1..])),
        None => (data, None),
    };
    let mut request = Request::new(());
    if let Ok(uri) = Uri::try_from(target) {
        *request.uri_mut() = uri;
    }
    if let Some(host) = host.and_then(|h| HeaderValue::from_bytes(h).ok()) {
        request.headers_mut().insert(http::header::HOST, host);
    }
    let Some(authority) = outbound_authority(&request) else {
        return;
    };
    // The inbound side hands the authority to the app as its Host.
    assert!(
        HeaderValue::from_str(authority.as_str()).is_ok(),
        "{authority:?} is a valid Host"
    );

    let mesh = MESH.lock().expect("not poisoned");
    let host = authority.host();
    let routed = mesh.route(host);
    assert_eq!(
        routed,
        mesh.route(&host.to_ascii_uppercase()),
        "{host:?} in upper case"
    );
    assert_eq!(
        routed,
        mesh.route(&host.to_ascii_lowercase()),
        "{host:?} in lower case"
    );
    if let Some(key) = &routed {
        let lower = host.to_ascii_lowercase();
        let name = key.split('.').next().unwrap_or_default();
        let names = [
            name.to_string(),
            key.clone(),
            format!("{key}.svc"),
            format!("{key}.svc.cluster.local"),
        ];
        assert!(names.contains(&lower), "{host:?} routed to {key}");
    }

    let (mut parts, ()) = request.into_parts();
    prepare_for_peer(&mut parts, authority.clone()).expect("a routable authority makes a URI");
    assert_eq!(parts.uri.authority(), Some(&authority));
    assert_eq!(parts.version, Version::HTTP_2);
    assert!(!parts.headers.contains_key(http::header::HOST));
    assert!(
        !parts
            .headers
            .contains_key(outrigger_proxy::CLIENT_ID_HEADER)
    );
});
