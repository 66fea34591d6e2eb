//! `kind: MeshService`: the strict parse (unknown fields are errors), then the checks
//! serde cannot make: names, the identity's shape and trust domain, endpoint addresses.

use std::net::SocketAddr;

use outrigger_api::{EndpointView, MeshService, ServiceView};
use outrigger_certs::SpiffeId;
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use super::documents::Document;
use super::invalid::Invalid;

/// Where the values checked below are, to point errors at them. Only read once the strict
/// parse has succeeded, so its shape is known to match.
#[derive(Deserialize)]
struct Spans {
    metadata: MetaSpans,
    spec: SpecSpans,
}

#[derive(Deserialize)]
struct MetaSpans {
    name: Spanned<String>,
    #[serde(default)]
    namespace: Option<Spanned<String>>,
}

#[derive(Deserialize)]
struct SpecSpans {
    identity: Spanned<String>,
    #[serde(default)]
    endpoints: Vec<EndpointSpans>,
}

#[derive(Deserialize)]
struct EndpointSpans {
    address: Spanned<String>,
}

/// Parses and checks one MeshService document.
pub(crate) fn parse(doc: &Document<'_>, trust_domain: &str) -> Result<ServiceView, Invalid> {
    let service: MeshService =
        serde_saphyr::from_str(doc.text).map_err(|e| Invalid::yaml(doc, &e))?;
    let spans: Option<Spans> = serde_saphyr::from_str(doc.text).ok();
    let at = |pick: &dyn Fn(&Spans) -> Option<Location>| spans.as_ref().and_then(pick);

    let meta = &service.metadata;
    if !is_dns_label(&meta.name) {
        return Err(Invalid::at(
            doc,
            at(&|s| Some(s.metadata.name.referenced)),
            format!("metadata.name: {:?} {NAME_RULE}", meta.name),
        ));
    }
    if !is_dns_label(&meta.namespace) {
        return Err(Invalid::at(
            doc,
            at(&|s| s.metadata.namespace.as_ref().map(|n| n.referenced)),
            format!("metadata.namespace: {:?} {NAME_RULE}", meta.namespace),
        ));
    }

    let identity_at = at(&|s| Some(s.spec.identity.referenced));
    let identity: SpiffeId = service
        .spec
        .identity
        .parse()
        .map_err(|e| Invalid::at(doc, identity_at, format!("spec.identity: {e}")))?;
    if identity.trust_domain() != trust_domain {
        return Err(Invalid::at(
            doc,
            identity_at,
            format!("spec.identity: {identity} is not in the CA's trust domain {trust_domain}"),
        ));
    }

    let mut endpoints = Vec::with_capacity(service.spec.endpoints.len());
    for (i, endpoint) in service.spec.endpoints.iter().enumerate() {
        let addr: SocketAddr = endpoint.address.trim().parse().map_err(|_| {
            Invalid::at(
                doc,
                at(&|s| s.spec.endpoints.get(i).map(|e| e.address.referenced)),
                format!(
                    "spec.endpoints[{i}]: invalid address {:?} (expected ip:port)",
                    endpoint.address
                ),
            )
        })?;
        endpoints.push(EndpointView {
            address: addr.to_string(),
        });
    }

    Ok(ServiceView {
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        identity: identity.to_string(),
        protocol: service.spec.protocol,
        endpoints,
        traffic_policy: None,
    })
}

const NAME_RULE: &str = "is not a valid name (lowercase letters, digits and '-', at most 63, starting and ending with a letter or digit)";

/// An RFC 1123 label, as Kubernetes requires of service names and namespaces: the name
/// also becomes the authority apps call (`http://payments/`).
fn is_dns_label(s: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| alnum(b) || b == b'-')
        && s.bytes().next().is_some_and(alnum)
        && s.bytes().last().is_some_and(alnum)
}
