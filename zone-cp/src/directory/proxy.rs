//! Which proxy a stream or a build is for: a sidecar of a Dataplane, or a zone proxy.

use atoll_core::{Kind, ResourceKey};

/// What a proxy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProxyKind {
    /// A sidecar of a Dataplane.
    Sidecar,
    /// A ZoneIngress.
    Ingress,
    /// A ZoneEgress.
    Egress,
}

impl ProxyKind {
    /// From the bootstrap's `proxyType` (and node metadata).
    pub fn from_proxy_type(proxy_type: &str) -> Option<ProxyKind> {
        match proxy_type {
            "sidecar" | "dataplane" | "" => Some(ProxyKind::Sidecar),
            "ingress" => Some(ProxyKind::Ingress),
            "egress" => Some(ProxyKind::Egress),
            _ => None,
        }
    }

    pub fn resource_kind(self) -> Kind {
        match self {
            ProxyKind::Sidecar => Kind::Dataplane,
            ProxyKind::Ingress => Kind::ZoneIngress,
            ProxyKind::Egress => Kind::ZoneEgress,
        }
    }

    /// The zone token scope this proxy presents (zone proxies only).
    pub fn token_scope(self) -> Option<atoll_identity::Scope> {
        match self {
            ProxyKind::Sidecar => None,
            ProxyKind::Ingress => Some(atoll_identity::Scope::Ingress),
            ProxyKind::Egress => Some(atoll_identity::Scope::Egress),
        }
    }
}

/// One proxy: a sidecar `(mesh, name)`, or a zone proxy (mesh empty).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProxyKey {
    pub kind: ProxyKind,
    pub mesh: String,
    pub name: String,
}

impl ProxyKey {
    pub fn sidecar(mesh: &str, name: &str) -> Self {
        Self {
            kind: ProxyKind::Sidecar,
            mesh: mesh.to_string(),
            name: name.to_string(),
        }
    }

    pub fn zone_proxy(kind: ProxyKind, name: &str) -> Self {
        Self {
            kind,
            mesh: String::new(),
            name: name.to_string(),
        }
    }

    pub fn resource_key(&self) -> ResourceKey {
        ResourceKey::new(self.kind.resource_kind(), &self.mesh, &self.name)
    }
}

impl std::fmt::Display for ProxyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            ProxyKind::Sidecar => write!(f, "{}.{}", self.mesh, self.name),
            ProxyKind::Ingress => write!(f, "zone ingress {}", self.name),
            ProxyKind::Egress => write!(f, "zone egress {}", self.name),
        }
    }
}
