//! The compact table of the mesh: one small entry per service (names, identity, protocol,
//! service and endpoint addresses, and a reference to its TrafficPolicy), indexed by the
//! names an app may use for it and by the addresses a redirected connection may have
//! been meant for. Nothing in it grows with traffic, and nothing is built per service
//! until the service is called: at 10,000 services the table is a few megabytes.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;

#[cfg(test)]
use outrigger_api::ServiceView;
use outrigger_api::{Protocol, ServiceRef, TrafficPolicySpec};
use outrigger_certs::SpiffeId;

use super::decode::WireService;
use super::policies::{self, PolicyInterner};

/// Suffixes of a Kubernetes-style service name that say nothing about which service.
const CLUSTER_SUFFIXES: [&str; 2] = [".svc.cluster.local", ".svc"];

/// One service of the mesh, as the control plane describes it.
#[derive(Debug, PartialEq)]
pub(crate) struct ServiceEntry {
    /// `name.namespace`: the key of the table, and of the service's runtime state.
    key: Box<str>,
    /// Where the name ends in `key`.
    name_len: usize,
    pub identity: SpiffeId,
    pub protocol: Protocol,
    /// Service addresses (a ClusterIP and port): any instance will do.
    pub addresses: Box<[SocketAddr]>,
    pub endpoints: Box<[SocketAddr]>,
    /// The TrafficPolicy, as interned JSON text shared with every service that has the
    /// same one ([`PolicyInterner`]); parsed when the service is first called.
    policy: Option<Arc<str>>,
}

impl ServiceEntry {
    /// The entry for a service as the control plane sent it.
    pub(crate) fn from_wire(
        service: &WireService<'_>,
        policies: &mut PolicyInterner,
    ) -> Result<Self, String> {
        let identity: SpiffeId = service
            .identity
            .parse()
            .map_err(|e| format!("identity: {e}"))?;
        let endpoints = service
            .endpoints
            .iter()
            .map(|e| {
                e.address
                    .parse::<SocketAddr>()
                    .map_err(|_| format!("endpoint {:?} is not ip:port", e.address))
            })
            .collect::<Result<Box<[_]>, _>>()?;
        let addresses = service
            .addresses
            .iter()
            .map(|a| {
                a.parse::<SocketAddr>()
                    .map_err(|_| format!("address {a:?} is not ip:port"))
            })
            .collect::<Result<Box<[_]>, _>>()?;
        let policy = match service.traffic_policy {
            Some(raw) => Some(
                policies
                    .intern(raw)
                    .map_err(|e| format!("trafficPolicy: {e}"))?,
            ),
            None => None,
        };
        Ok(ServiceEntry {
            key: format!("{}.{}", service.name, service.namespace).into_boxed_str(),
            name_len: service.name.len(),
            identity,
            protocol: service.protocol,
            addresses,
            endpoints,
            policy,
        })
    }

    /// The entry for a view, as if it had come over the wire.
    #[cfg(test)]
    pub(crate) fn from_view(view: &ServiceView) -> Result<Self, String> {
        let json = serde_json::to_string(view).map_err(|e| e.to_string())?;
        let wire: WireService<'_> = serde_json::from_str(&json).map_err(|e| e.to_string())?;
        Self::from_wire(&wire, &mut PolicyInterner::default())
    }

    /// `name.namespace`.
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    pub(crate) fn name(&self) -> &str {
        &self.key[..self.name_len]
    }

    pub(crate) fn namespace(&self) -> &str {
        &self.key[self.name_len + 1..]
    }

    /// The service's TrafficPolicy (`None`: DESIGN.md's defaults), without its
    /// `targetRef`. Parsed on each call: the caller builds the service's runtime state
    /// from it once.
    pub(crate) fn traffic_policy(&self) -> Option<TrafficPolicySpec> {
        let text = self.policy.as_deref()?;
        match policies::parse(text) {
            Ok(spec) => Some(spec),
            Err(error) => {
                // It was serialized by this process from a parsed spec.
                tracing::error!(service = self.key(), %error, "stored TrafficPolicy unreadable; using defaults");
                None
            }
        }
    }
}

/// An entry in a set, found by its `name.namespace` (the set holds no second copy of
/// the key).
#[derive(Clone, Debug)]
struct ByKey(Arc<ServiceEntry>);

/// An entry in a set, found by its bare name.
#[derive(Clone, Debug)]
struct ByName(Arc<ServiceEntry>);

impl Borrow<str> for ByKey {
    fn borrow(&self) -> &str {
        self.0.key()
    }
}

impl Hash for ByKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes, so that a `&str` finds it.
        self.0.key().hash(state);
    }
}

impl PartialEq for ByKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.key() == other.0.key()
    }
}

impl Eq for ByKey {}

impl Borrow<str> for ByName {
    fn borrow(&self) -> &str {
        self.0.name()
    }
}

impl Hash for ByName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.name().hash(state);
    }
}

impl PartialEq for ByName {
    fn eq(&self, other: &Self) -> bool {
        self.0.name() == other.0.name()
    }
}

impl Eq for ByName {}

/// Every service of the mesh at one config version. Replaced whole on each change (the
/// entries are shared between versions, so a change copies only the indexes).
#[derive(Clone, Debug, Default)]
pub(crate) struct MeshTable {
    /// By `name.namespace`.
    services: HashSet<ByKey>,
    /// By bare name: the service of that name in our own namespace, else the only one.
    bare: HashSet<ByName>,
    /// By service address, then by endpoint address (a transparent connection's
    /// original destination); a service address wins over an equal endpoint address.
    by_addr: HashMap<SocketAddr, Destination>,
}

/// What a redirected connection's original destination was, in the mesh.
#[derive(Clone, Debug)]
pub(crate) enum Destination {
    /// A service address: balance over the service's endpoints.
    Service(Arc<ServiceEntry>),
    /// One instance's address: that instance of the service.
    Endpoint(Arc<ServiceEntry>, SocketAddr),
}

impl Destination {
    pub(crate) fn entry(&self) -> &Arc<ServiceEntry> {
        match self {
            Destination::Service(entry) | Destination::Endpoint(entry, _) => entry,
        }
    }
}

impl MeshTable {
    /// A table of `entries`.
    pub(crate) fn from_entries(
        entries: Vec<Arc<ServiceEntry>>,
        own_namespace: Option<&str>,
    ) -> Self {
        let mut table = MeshTable::default();
        table.upsert(entries);
        table.index(own_namespace);
        table
    }

    /// A table of `views`; a view that cannot be read is skipped.
    #[cfg(test)]
    pub(crate) fn from_views(views: &[ServiceView], own_namespace: Option<&str>) -> Self {
        let entries: Vec<_> = views
            .iter()
            .filter_map(|v| ServiceEntry::from_view(v).ok().map(Arc::new))
            .collect();
        Self::from_entries(entries, own_namespace)
    }

    /// The table with `upserted` added or replaced and `removed` taken out.
    pub(crate) fn changed(
        &self,
        upserted: Vec<Arc<ServiceEntry>>,
        removed: &[ServiceRef],
        own_namespace: Option<&str>,
    ) -> Self {
        let mut table = MeshTable {
            services: self.services.clone(),
            bare: HashSet::new(),
            by_addr: HashMap::new(),
        };
        for gone in removed {
            table
                .services
                .remove(format!("{}.{}", gone.name, gone.namespace).as_str());
        }
        table.upsert(upserted);
        table.index(own_namespace);
        table
    }

    fn upsert(&mut self, entries: Vec<Arc<ServiceEntry>>) {
        self.services.reserve(entries.len());
        for entry in entries {
            // `replace`, not `insert`: an equal key must take the new entry.
            self.services.replace(ByKey(entry));
        }
    }

    fn index(&mut self, own_namespace: Option<&str>) {
        self.index_bare_names(own_namespace);
        self.index_addresses();
    }

    fn index_addresses(&mut self) {
        let mut by_addr = HashMap::new();
        // Endpoints first, so that a service address inserted after them replaces one.
        for ByKey(entry) in &self.services {
            for &addr in &entry.endpoints {
                by_addr.insert(addr, Destination::Endpoint(entry.clone(), addr));
            }
        }
        for ByKey(entry) in &self.services {
            for &addr in &entry.addresses {
                by_addr.insert(addr, Destination::Service(entry.clone()));
            }
        }
        self.by_addr = by_addr;
    }

    /// Where a redirected connection to `addr` goes in the mesh: the service that has it
    /// as a service address, else the service with an instance there; `None`: not in the
    /// mesh (egress).
    pub(crate) fn lookup_addr(&self, addr: SocketAddr) -> Option<&Destination> {
        self.by_addr.get(&addr)
    }

    fn index_bare_names(&mut self, own_namespace: Option<&str>) {
        let mut candidates: HashMap<&str, (&Arc<ServiceEntry>, usize)> =
            HashMap::with_capacity(self.services.len());
        for ByKey(entry) in &self.services {
            let ours = Some(entry.namespace()) == own_namespace;
            candidates
                .entry(entry.name())
                .and_modify(|(chosen, count)| {
                    *count += 1;
                    if ours {
                        *chosen = entry;
                    }
                })
                .or_insert((entry, 1));
        }
        let bare: HashSet<ByName> = candidates
            .into_values()
            .filter(|(entry, count)| *count == 1 || Some(entry.namespace()) == own_namespace)
            .map(|(entry, _)| ByName(entry.clone()))
            .collect();
        self.bare = bare;
    }

    /// The service for a request's host: `name`, `name.namespace`, `name.namespace.svc` or
    /// `name.namespace.svc.cluster.local`, in any letter case, without the port.
    pub(crate) fn lookup(&self, host: &str) -> Option<&Arc<ServiceEntry>> {
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.lookup_lowercase(&host.to_ascii_lowercase());
        }
        self.lookup_lowercase(host)
    }

    fn lookup_lowercase(&self, host: &str) -> Option<&Arc<ServiceEntry>> {
        // A suffix goes only after `name.namespace`: in `orders.svc`, `svc` is the
        // namespace, and stripping it would send the call to another `orders`.
        let host = CLUSTER_SUFFIXES
            .iter()
            .find_map(|suffix| host.strip_suffix(suffix))
            .filter(|rest| rest.contains('.'))
            .unwrap_or(host);
        if host.contains('.') {
            self.services.get(host).map(|e| &e.0)
        } else {
            self.bare.get(host).map(|e| &e.0)
        }
    }

    /// The entry of `name.namespace`.
    pub(crate) fn get(&self, key: &str) -> Option<&Arc<ServiceEntry>> {
        self.services.get(key).map(|e| &e.0)
    }

    pub(crate) fn len(&self) -> usize {
        self.services.len()
    }

    /// Every entry, in no particular order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = &Arc<ServiceEntry>> {
        self.services.iter().map(|e| &e.0)
    }
}

#[cfg(test)]
mod tests {
    use outrigger_api::EndpointView;

    use super::*;

    fn view(name: &str, namespace: &str) -> ServiceView {
        ServiceView {
            addresses: vec![],
            name: name.into(),
            namespace: namespace.into(),
            identity: format!("spiffe://cluster.local/ns/{namespace}/sa/{name}"),
            protocol: Protocol::Http,
            endpoints: vec![EndpointView {
                address: "127.0.0.1:4143".into(),
            }],
            traffic_policy: None,
        }
    }

    #[test]
    fn names_an_app_may_use_find_the_service() {
        let table = MeshTable::from_views(&[view("payments", "shop")], Some("web"));
        for host in [
            "payments",
            "payments.shop",
            "payments.shop.svc",
            "payments.shop.svc.cluster.local",
            "Payments.SHOP.svc.cluster.local",
        ] {
            let entry = table.lookup(host).unwrap_or_else(|| panic!("{host}"));
            assert_eq!((entry.name(), entry.namespace()), ("payments", "shop"));
        }
        assert!(table.lookup("payments.other").is_none());
        assert!(table.lookup("orders").is_none());
    }

    /// Found by the `authority` fuzz target: `orders.svc` was read as the bare name
    /// `orders`, so it reached `orders` of another namespace.
    #[test]
    fn a_namespace_named_svc_is_a_namespace() {
        let views = [view("orders", "shop"), view("orders", "svc")];
        let table = MeshTable::from_views(&views, Some("shop"));
        assert_eq!(table.lookup("orders.svc").unwrap().namespace(), "svc");
        assert_eq!(table.lookup("orders.svc.svc").unwrap().namespace(), "svc");
        assert_eq!(table.lookup("orders").unwrap().namespace(), "shop");
        let shop_only = MeshTable::from_views(&views[..1], Some("shop"));
        assert!(shop_only.lookup("orders.svc").is_none());
        assert!(shop_only.lookup("orders.svc.cluster.local").is_none());
    }

    #[test]
    fn a_bare_name_is_our_namespace_first_and_never_a_guess() {
        let views = [view("db", "shop"), view("db", "web"), view("cache", "ops")];
        let table = MeshTable::from_views(&views, Some("web"));
        assert_eq!(table.lookup("db").unwrap().namespace(), "web");
        assert_eq!(table.lookup("cache").unwrap().namespace(), "ops");
        let elsewhere = MeshTable::from_views(&views, Some("billing"));
        assert!(
            elsewhere.lookup("db").is_none(),
            "two candidates, none ours"
        );
    }

    #[test]
    fn changes_replace_and_remove_entries_and_share_the_rest() {
        let table = MeshTable::from_views(&[view("a", "x"), view("b", "x")], None);
        let mut b = view("b", "x");
        b.endpoints.push(EndpointView {
            address: "127.0.0.1:5000".into(),
        });
        let upserted = [b, view("c", "x")]
            .map(|v| Arc::new(ServiceEntry::from_view(&v).unwrap()))
            .to_vec();
        let next = table.changed(
            upserted,
            &[ServiceRef {
                namespace: "x".into(),
                name: "a".into(),
            }],
            None,
        );
        assert!(next.get("a.x").is_none());
        assert_eq!(next.get("b.x").unwrap().endpoints.len(), 2);
        assert!(next.get("c.x").is_some());
        assert_eq!(next.len(), 2);
        // The old table is untouched: requests in flight keep their view.
        assert_eq!(table.get("b.x").unwrap().endpoints.len(), 1);
        assert!(table.lookup("a").is_some());
    }

    #[test]
    fn an_address_finds_a_service_address_before_an_endpoint() {
        let mut db = view("db", "x");
        db.addresses = vec!["10.96.0.12:5432".into(), "10.0.0.9:5432".into()];
        db.endpoints[0].address = "10.0.0.7:5432".into();
        // Another service has an instance at db's second service address.
        let mut odd = view("odd", "x");
        odd.endpoints[0].address = "10.0.0.9:5432".into();
        let table = MeshTable::from_views(&[odd, db], None);
        let find = |a: &str| table.lookup_addr(a.parse().unwrap());
        let Some(Destination::Service(entry)) = find("10.96.0.12:5432") else {
            panic!("a service address");
        };
        assert_eq!(entry.key(), "db.x");
        let Some(Destination::Service(entry)) = find("10.0.0.9:5432") else {
            panic!("the service address wins over an endpoint address");
        };
        assert_eq!(entry.key(), "db.x");
        let Some(Destination::Endpoint(entry, addr)) = find("10.0.0.7:5432") else {
            panic!("an endpoint address");
        };
        assert_eq!((entry.key(), addr.port()), ("db.x", 5432));
        assert!(
            find("10.0.0.7:5433").is_none(),
            "another port: not in the mesh"
        );
        assert!(find("192.0.2.1:80").is_none());
        // A delta that removes the service removes its addresses.
        let next = table.changed(
            vec![],
            &[ServiceRef {
                namespace: "x".into(),
                name: "db".into(),
            }],
            None,
        );
        assert!(
            next.lookup_addr("10.96.0.12:5432".parse().unwrap())
                .is_none()
        );
        assert!(matches!(
            next.lookup_addr("10.0.0.9:5432".parse().unwrap()),
            Some(Destination::Endpoint(..))
        ));
    }

    #[test]
    fn a_bad_view_is_skipped_not_fatal() {
        let mut bad = view("bad", "x");
        bad.endpoints[0].address = "nowhere".into();
        let table = MeshTable::from_views(&[bad, view("good", "x")], None);
        assert!(table.lookup("bad.x").is_none());
        assert!(table.lookup("good.x").is_some());
    }

    #[test]
    fn the_policy_is_kept_as_text_and_parsed_on_demand() {
        let mut v = view("p", "x");
        v.traffic_policy = Some(TrafficPolicySpec {
            load_balancer: Some(outrigger_api::LoadBalancer::RoundRobin),
            ..TrafficPolicySpec::default()
        });
        let entry = ServiceEntry::from_view(&v).unwrap();
        assert_eq!(entry.traffic_policy(), v.traffic_policy);
    }
}
