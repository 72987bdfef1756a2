//! What sidecars and the two zone-proxy roles share: the names and SNI formats of zone-proxy
//! traffic, the endpoint lists a sidecar uses to reach other zones or the local egress, the
//! errors, and the building blocks (SNI-selected filter chains, TCP proxy, EDS cluster, input
//! checks) from which `zone-ingress/` (atoll-zone-ingress) and `zone-egress/`
//! (atoll-zone-egress) generate each role's Envoy resources. `ZONE-PROXIES.md` beside this
//! crate describes the traffic, SNI formats, names and ports.
//!
//! Cluster names carry a prefix (`ingress:`, `egress:`, `external:`) so they never collide with
//! a sidecar's clusters (named after the bare service).

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::context::Endpoint;
pub use crate::generate::outbound_sni;
use crate::generate::{defaults, spiffe_id, stat_name};
use crate::model::{
    Address, Cluster, ClusterLoadAssignment, ConfigSource, DiscoveryType, EdsClusterConfig, Filter,
    FilterChain, FilterChainMatch, Listener, ListenerFilter, Resource, TcpProxy, TrafficDirection,
    TransportSocket, TypedConfig, names,
};
use crate::proto::EnvoyResource;
use crate::zone_context::{LocalZoneEgress, RemoteZoneIngress};

/// The CA bundle used to verify an external service's certificate when its MeshExternalService
/// names no CA (the Debian/Ubuntu path, which Envoy's images use).
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The service name in the SPIFFE ID of a zone egress's certificate in each mesh:
/// `spiffe://<mesh>/zone-egress` (see [`egress_spiffe_id`]).
pub const EGRESS_SERVICE: &str = "zone-egress";

/// Why a zone proxy context could not be turned into Envoy configuration. Field paths use the
/// context's YAML names (`meshes[0].externalServices[1].endpoints[0].address`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneProxyError {
    #[error("{field}: {value:?} is not an IP address")]
    InvalidAddress { field: String, value: String },
    #[error("{field}: {value:?} is neither an IP address nor a DNS name")]
    InvalidHost { field: String, value: String },
    #[error("{field}: must not be 0")]
    ZeroPort { field: String },
    #[error("{field}: must not be empty")]
    Empty { field: String },
    #[error("{field}: must be at least 1")]
    ZeroWeight { field: String },
    #[error("{field}: {value:?} must not contain any of {forbidden:?}")]
    InvalidName {
        field: String,
        value: String,
        forbidden: &'static str,
    },
    #[error(
        "{field}: the endpoint is in zone {endpoint_zone:?}; the ingress of zone {zone:?} forwards only to its own zone"
    )]
    RemoteEndpoint {
        field: String,
        zone: String,
        endpoint_zone: String,
    },
    #[error("two routes of the proxy use the SNI {sni:?}")]
    DuplicateSni { sni: String },
    #[error("two different {type_url} resources are named {name:?}")]
    Conflict { type_url: String, name: String },
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

/// The SNI a sidecar sends to reach the MeshExternalService `name` of `mesh` through the zone
/// egress: `<name>{mesh=<mesh>,external}`. The `external` flag has no `=`, so it can never be
/// mistaken for a tag of a mesh service's SNI (`<service>{mesh=<mesh>,<tag>=<value>}`), and a
/// MeshExternalService may share its name with a mesh service.
pub fn external_sni(name: &str, mesh: &str) -> String {
    format!("{name}{{mesh={mesh},external}}")
}

/// The SDS secret holding the egress's certificate and key in `mesh`: `identity_cert:<mesh>`.
pub fn egress_identity_secret(mesh: &str) -> String {
    format!("identity_cert:{mesh}")
}

/// The SDS secret holding the CA of `mesh`, which the egress validates sidecars against:
/// `mesh_ca:<mesh>`.
pub fn egress_mesh_ca_secret(mesh: &str) -> String {
    format!("mesh_ca:{mesh}")
}

/// The SPIFFE ID the egress's certificate in `mesh` carries (the control plane issues it; a
/// sidecar sending to a MeshExternalService checks it).
pub fn egress_spiffe_id(mesh: &str) -> String {
    spiffe_id(mesh, EGRESS_SERVICE)
}

/// The zone ingress's listener: `ingress:<address>:<port>`.
pub fn ingress_listener_name(address: &str, port: u16) -> String {
    format!("ingress:{address}:{port}")
}

/// The zone egress's listener: `egress:<address>:<port>`.
pub fn egress_listener_name(address: &str, port: u16) -> String {
    format!("egress:{address}:{port}")
}

/// The ingress's cluster of a service's local endpoints: `ingress:<mesh>:<service>`.
pub fn ingress_cluster_name(mesh: &str, service: &str) -> String {
    format!("ingress:{mesh}:{service}")
}

/// The egress's cluster of a remote service's zone ingresses: `egress:<mesh>:<service>`.
pub fn egress_cluster_name(mesh: &str, service: &str) -> String {
    format!("egress:{mesh}:{service}")
}

/// The egress's cluster of a MeshExternalService's endpoints: `external:<mesh>:<name>`.
pub fn external_cluster_name(mesh: &str, name: &str) -> String {
    format!("external:{mesh}:{name}")
}

// ---------------------------------------------------------------------------------------------
// Sidecar helpers
// ---------------------------------------------------------------------------------------------

/// The endpoints of a sidecar's outbound cluster for the part of a service that runs in other
/// zones: one endpoint per remote zone ingress, at its advertised address, weighted by the
/// instances of the service behind it, with locality = its zone (so `generate` puts them after
/// the local endpoints). Ingresses with no instances are left out. Sorted.
pub fn remote_endpoints(zone_ingresses: &[RemoteZoneIngress]) -> Vec<Endpoint> {
    let mut endpoints: Vec<Endpoint> = zone_ingresses
        .iter()
        .filter(|ingress| ingress.instances > 0)
        .map(|ingress| Endpoint {
            address: ingress.address.clone(),
            port: ingress.port,
            weight: ingress.instances,
            zone: Some(ingress.zone.clone()),
        })
        .collect();
    endpoints.sort();
    endpoints.dedup();
    endpoints
}

/// The endpoints of a sidecar's outbound cluster when the traffic must leave through this
/// zone's egress (a MeshExternalService, or any other zone with `routing.zoneEgress: true`):
/// every local egress, weight 1, local (no zone). The cluster keeps its SNI
/// ([`outbound_sni`] or [`external_sni`]), which is what the egress routes on. Sorted.
pub fn egress_endpoints(egresses: &[LocalZoneEgress]) -> Vec<Endpoint> {
    let mut endpoints: Vec<Endpoint> = egresses
        .iter()
        .map(|egress| Endpoint {
            address: egress.address.clone(),
            port: egress.port,
            weight: 1,
            zone: None,
        })
        .collect();
    endpoints.sort();
    endpoints.dedup();
    endpoints
}

// ---------------------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------------------

/// The SNI-selected filter chains of a zone proxy's listener, kept sorted by SNI.
#[derive(Debug, Default)]
pub struct Chains {
    by_sni: BTreeMap<String, FilterChain>,
}

impl Chains {
    /// Adds the chain serving `sni` (TLS only); a second chain for the same SNI is an error,
    /// as Envoy could not tell them apart.
    pub fn add(
        &mut self,
        sni: String,
        filters: Vec<Filter>,
        transport_socket: Option<TransportSocket>,
    ) -> Result<(), ZoneProxyError> {
        if self.by_sni.contains_key(&sni) {
            return Err(ZoneProxyError::DuplicateSni { sni });
        }
        let chain = FilterChain {
            name: Some(sni.clone()),
            filter_chain_match: Some(FilterChainMatch {
                transport_protocol: Some("tls".to_string()),
                server_names: vec![sni.clone()],
            }),
            filters,
            transport_socket,
        };
        self.by_sni.insert(sni, chain);
        Ok(())
    }

    /// A pass-through route: the chain for `sni` hands the still-encrypted connection to the
    /// EDS cluster `assignment` names; returns that cluster and its endpoints, to serve beside
    /// the listener.
    pub fn pass_through(
        &mut self,
        sni: String,
        assignment: ClusterLoadAssignment,
    ) -> Result<[Resource; 2], ZoneProxyError> {
        let cluster = assignment.cluster_name.clone();
        self.add(sni, vec![tcp_proxy(&cluster)], None)?;
        Ok([
            Resource::Cluster(Box::new(eds_cluster(&cluster))),
            Resource::ClusterLoadAssignment(assignment),
        ])
    }

    /// The listener with the TLS inspector and every chain, and no default chain: a
    /// connection whose SNI matches no chain (or that is not TLS) is closed. `None` without
    /// chains.
    pub fn listener(self, name: String, address: &str, port: u16) -> Option<Resource> {
        if self.by_sni.is_empty() {
            return None;
        }
        Some(Resource::Listener(Listener {
            name,
            address: Address::socket(address, port),
            filter_chains: self.by_sni.into_values().collect(),
            listener_filters: vec![ListenerFilter::tls_inspector()],
            traffic_direction: Some(TrafficDirection::Inbound),
        }))
    }
}

/// A TCP proxy to `cluster`, with the outbound idle timeout.
pub fn tcp_proxy(cluster: &str) -> Filter {
    Filter {
        name: names::TCP_PROXY.to_string(),
        typed_config: TypedConfig::TcpProxy(TcpProxy {
            stat_prefix: stat_name(cluster),
            cluster: cluster.to_string(),
            idle_timeout: Some(defaults::OUTBOUND_IDLE_TIMEOUT),
            max_connect_attempts: None,
        }),
    }
}

/// A plain-TCP EDS cluster (the bytes it carries are the sidecars' mTLS).
fn eds_cluster(name: &str) -> Cluster {
    Cluster {
        name: name.to_string(),
        discovery_type: DiscoveryType::Eds,
        eds_cluster_config: Some(EdsClusterConfig {
            eds_config: ConfigSource::ads(),
        }),
        connect_timeout: defaults::OUTBOUND_CONNECT_TIMEOUT,
        load_assignment: None,
        circuit_breakers: None,
        outlier_detection: None,
        typed_extension_protocol_options: BTreeMap::new(),
        transport_socket: None,
    }
}

/// Converts and sorts the resources by (type URL, name); two different resources under one
/// name are an error.
pub fn collect(resources: Vec<Resource>) -> Result<Vec<EnvoyResource>, ZoneProxyError> {
    let mut by_key: BTreeMap<(&'static str, String), EnvoyResource> = BTreeMap::new();
    for resource in &resources {
        let generated = EnvoyResource::new(resource);
        let key = (resource.type_url(), resource.name().to_string());
        match by_key.get(&key) {
            Some(existing) if existing.json != generated.json => {
                return Err(ZoneProxyError::Conflict {
                    type_url: key.0.to_string(),
                    name: key.1,
                });
            }
            Some(_) => {}
            None => {
                by_key.insert(key, generated);
            }
        }
    }
    Ok(by_key.into_values().collect())
}

/// `value` must not be empty.
pub fn non_empty(field: &str, value: &str) -> Result<(), ZoneProxyError> {
    if value.is_empty() {
        return Err(ZoneProxyError::Empty {
            field: field.to_string(),
        });
    }
    Ok(())
}

/// `value` must be an IP address.
pub fn ip(field: &str, value: &str) -> Result<(), ZoneProxyError> {
    value
        .parse::<IpAddr>()
        .map(|_| ())
        .map_err(|_| ZoneProxyError::InvalidAddress {
            field: field.to_string(),
            value: value.to_string(),
        })
}

/// An IP address or a DNS name (letters, digits, `-` and `_` in dot-separated labels).
pub fn host(field: &str, value: &str) -> Result<(), ZoneProxyError> {
    if value.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let name = value.strip_suffix('.').unwrap_or(value);
    if name.len() <= 253 && name.split('.').all(label_ok) {
        return Ok(());
    }
    Err(ZoneProxyError::InvalidHost {
        field: field.to_string(),
        value: value.to_string(),
    })
}

/// `value` must not be 0.
pub fn port(field: &str, value: u16) -> Result<(), ZoneProxyError> {
    if value == 0 {
        return Err(ZoneProxyError::ZeroPort {
            field: field.to_string(),
        });
    }
    Ok(())
}

/// Characters that would make an SNI or a cluster name ambiguous.
const MESH_FORBIDDEN: &str = "{},=:";
const SERVICE_FORBIDDEN: &str = "{},";

/// A mesh name usable in SNIs and cluster names.
pub fn mesh_name(field: &str, value: &str) -> Result<(), ZoneProxyError> {
    checked_name(field, value, MESH_FORBIDDEN)
}

/// A service name usable in SNIs and cluster names.
pub fn service_name(field: &str, value: &str) -> Result<(), ZoneProxyError> {
    checked_name(field, value, SERVICE_FORBIDDEN)
}

fn checked_name(field: &str, value: &str, forbidden: &'static str) -> Result<(), ZoneProxyError> {
    non_empty(field, value)?;
    if value.contains(|c| forbidden.contains(c)) {
        return Err(ZoneProxyError::InvalidName {
            field: field.to_string(),
            value: value.to_string(),
            forbidden,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::load_assignment;

    fn local(address: &str) -> Endpoint {
        Endpoint {
            address: address.into(),
            port: 8080,
            weight: 1,
            zone: None,
        }
    }

    fn zone_ingress(zone: &str, address: &str, instances: u32) -> RemoteZoneIngress {
        RemoteZoneIngress {
            zone: zone.into(),
            address: address.into(),
            port: 10001,
            instances,
        }
    }

    #[test]
    fn sni_formats() {
        assert_eq!(outbound_sni("backend", "default"), "backend{mesh=default}");
        assert_eq!(
            external_sni("httpbin", "default"),
            "httpbin{mesh=default,external}"
        );
        assert_eq!(egress_identity_secret("m1"), "identity_cert:m1");
        assert_eq!(egress_mesh_ca_secret("m1"), "mesh_ca:m1");
        assert_eq!(egress_spiffe_id("m1"), "spiffe://m1/zone-egress");
    }

    #[test]
    fn remote_endpoints_weight_by_instances_with_zone_locality() {
        let endpoints = remote_endpoints(&[
            zone_ingress("west", "172.16.0.2", 3),
            zone_ingress("east", "172.16.1.2", 2),
            zone_ingress("north", "172.16.2.2", 0),
        ]);
        assert_eq!(
            endpoints,
            vec![
                Endpoint {
                    address: "172.16.0.2".into(),
                    port: 10001,
                    weight: 3,
                    zone: Some("west".into()),
                },
                Endpoint {
                    address: "172.16.1.2".into(),
                    port: 10001,
                    weight: 2,
                    zone: Some("east".into()),
                },
            ]
        );
        // In a sidecar cluster with local endpoints, the zones come after them.
        let mut all = endpoints.clone();
        all.push(local("10.0.0.3"));
        let cla = load_assignment("backend", &all);
        assert_eq!(cla.endpoints[0].locality, None);
        assert_eq!(cla.endpoints[1].priority, Some(1));
    }

    #[test]
    fn egress_endpoints_are_local() {
        let endpoints = egress_endpoints(&[
            LocalZoneEgress {
                address: "10.0.0.7".into(),
                port: 10002,
            },
            LocalZoneEgress {
                address: "10.0.0.6".into(),
                port: 10002,
            },
        ]);
        assert_eq!(endpoints.len(), 2);
        assert_eq!(endpoints[0].address, "10.0.0.6");
        assert!(endpoints.iter().all(|e| e.zone.is_none() && e.weight == 1));
    }
}
