//! `kind: MeshService`: the checks serde cannot make: names, the identity's shape and
//! trust domain, service and endpoint addresses.

use std::net::SocketAddr;

use outrigger_api::{EndpointView, MeshService, ServiceView};
use outrigger_certs::SpiffeId;

use super::invalid::Invalid;
use super::located::Located;

/// The service as pushed to proxies (static endpoints only), and every problem found.
pub(crate) fn check(
    service: MeshService,
    at: &Located<'_, '_>,
    trust_domain: &str,
) -> (ServiceView, Vec<Invalid>) {
    let mut errors = Vec::new();
    at.check_meta(&service.metadata, &mut errors);

    match service.spec.identity.parse::<SpiffeId>() {
        Ok(id) if id.trust_domain() != trust_domain => errors.push(at.error(
            "spec.identity",
            format!("{id} is not in the trust domain {trust_domain}"),
        )),
        Ok(_) => {}
        Err(e) => errors.push(at.error("spec.identity", e.to_string())),
    }

    let mut endpoints = Vec::with_capacity(service.spec.endpoints.len());
    for (i, endpoint) in service.spec.endpoints.iter().enumerate() {
        match endpoint.address.trim().parse::<SocketAddr>() {
            Ok(addr) => {
                let address = addr.to_string();
                if endpoints
                    .iter()
                    .any(|e: &EndpointView| e.address == address)
                {
                    errors.push(at.error(
                        &format!("spec.endpoints[{i}].address"),
                        format!("{address} is listed twice"),
                    ));
                } else {
                    endpoints.push(EndpointView { address });
                }
            }
            Err(_) => errors.push(at.error(
                &format!("spec.endpoints[{i}].address"),
                format!("invalid address {:?} (expected ip:port)", endpoint.address),
            )),
        }
    }

    let addresses = socket_addresses(
        service.spec.addresses.iter().map(String::as_str),
        "spec.addresses",
        at,
        &mut errors,
    );

    let view = ServiceView {
        addresses,
        name: service.metadata.name,
        namespace: service.metadata.namespace,
        identity: service.spec.identity,
        protocol: service.spec.protocol,
        endpoints,
        traffic_policy: None,
    };
    (view, errors)
}

/// Each of `written` as a normalized `ip:port`; a bad or repeated one is reported at
/// `field[i]`.
fn socket_addresses<'s>(
    written: impl Iterator<Item = &'s str>,
    field: &str,
    at: &Located<'_, '_>,
    errors: &mut Vec<Invalid>,
) -> Vec<String> {
    let mut addresses: Vec<String> = Vec::new();
    for (i, text) in written.enumerate() {
        match text.trim().parse::<SocketAddr>() {
            Ok(addr) => {
                let address = addr.to_string();
                if addresses.contains(&address) {
                    errors.push(at.error(
                        &format!("{field}[{i}]"),
                        format!("{address} is listed twice"),
                    ));
                } else {
                    addresses.push(address);
                }
            }
            Err(_) => errors.push(at.error(
                &format!("{field}[{i}]"),
                format!("invalid address {text:?} (expected ip:port)"),
            )),
        }
    }
    addresses
}
