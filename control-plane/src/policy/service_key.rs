//! `namespace/name`: how a MeshService is named across the control plane (the watch's
//! `service` parameter, registrations, status).

use std::fmt;
use std::str::FromStr;

use outrigger_api::ObjectMeta;

use super::located::is_dns_label;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

impl ServiceKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ServiceKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    pub fn of(meta: &ObjectMeta) -> Self {
        ServiceKey::new(meta.namespace.clone(), meta.name.clone())
    }

    pub fn as_pair(&self) -> (&str, &str) {
        (&self.namespace, &self.name)
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Parses `namespace/name` (two DNS labels).
impl FromStr for ServiceKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('/') {
            Some((ns, name)) if is_dns_label(ns) && is_dns_label(name) => {
                Ok(ServiceKey::new(ns, name))
            }
            _ => Err(format!("{s:?} is not <namespace>/<name>")),
        }
    }
}
