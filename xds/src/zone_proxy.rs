//! The pure, deterministic generation of the zone proxies' Envoy resources: the zone ingress
//! (from a `ZoneIngressContext`) and the zone egress (from a `ZoneEgressContext`), plus the
//! helpers sidecars use to reach them. `ZONE-PROXIES.md` beside this crate describes the
//! traffic, SNI formats, names and ports.
//!
//! - **Zone ingress**: one listener with the TLS inspector and one filter chain per
//!   `(mesh, service)`, selected by the SNI the sidecar sends ([`outbound_sni`]), that passes
//!   the still-encrypted connection to an EDS cluster of the service's local endpoints. The
//!   ingress never decrypts: the two sidecars do mTLS end to end. An unknown SNI matches no
//!   chain and Envoy closes the connection (there is no default chain).
//! - **Zone egress**: one listener with the TLS inspector and, per mesh, (a) one pass-through
//!   chain per remote service (same SNI as above, forwarded to the other zones' ingresses,
//!   weighted by instance count, one locality per zone) and (b) one chain per
//!   MeshExternalService ([`external_sni`]) that terminates mesh mTLS with the egress's identity
//!   in that mesh and originates the outside connection (plaintext or TLS, TCP or HTTP).
//! - **Sidecars**: [`remote_endpoints`] and [`egress_endpoints`] build the endpoint lists of a
//!   sidecar's outbound cluster when the service runs in other zones.
//!
//! Cluster names carry a prefix (`ingress:`, `egress:`, `external:`) so they never collide with
//! a sidecar's clusters (named after the bare service).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::context::{Endpoint, Protocol};
pub use crate::generate::outbound_sni;
use crate::generate::{
    defaults, http_connection_manager, http_protocol_options, load_assignment, mesh_validation,
    spiffe_id, stat_name,
};
use crate::model::{
    self, Address, CertificateValidationContext, Cluster, ClusterLoadAssignment, CommonTlsContext,
    ConfigSource, DataSource, DiscoveryType, DownstreamTlsContext, EdsClusterConfig, Filter,
    FilterChain, FilterChainMatch, HttpFilter, LbEndpoint, Listener, ListenerFilter,
    LocalityLbEndpoints, Resource, RouteAction, SanType, SdsSecretConfig, Secret, StringMatcher,
    SubjectAltNameMatcher, TcpProxy, TlsCertificate, TrafficDirection, TransportSocket,
    TypedConfig, UpstreamTlsContext, names,
};
use crate::proto::EnvoyResource;
use crate::zone_context::{
    CaCert, EgressMesh, ExternalEndpoint, ExternalService, ExternalTls, IngressService,
    LocalZoneEgress, RemoteZoneIngress, TlsVerification, ZoneEgressContext, ZoneIngressContext,
};

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
// Zone ingress
// ---------------------------------------------------------------------------------------------

/// Generates every Envoy resource of one zone ingress (its listener, and per service an EDS
/// cluster and its ClusterLoadAssignment), sorted by type URL then name. Without any service
/// there is no listener (Envoy refuses a listener without filter chains).
pub fn generate_ingress(ctx: &ZoneIngressContext) -> Result<Vec<EnvoyResource>, ZoneProxyError> {
    validate_ingress(ctx)?;
    let mut resources = Vec::new();
    let mut chains = Chains::default();
    for service in &ctx.services {
        let cluster = ingress_cluster_name(&service.mesh, &service.service);
        chains.add(
            outbound_sni(&service.service, &service.mesh),
            vec![tcp_proxy(&cluster)],
            None,
        )?;
        resources.push(Resource::Cluster(Box::new(eds_cluster(&cluster))));
        resources.push(Resource::ClusterLoadAssignment(ingress_assignment(
            &cluster, service,
        )));
    }
    let name = ingress_listener_name(&ctx.address, ctx.port);
    resources.extend(chains.listener(name, &ctx.address, ctx.port));
    collect(resources)
}

/// The local endpoints of a service at the ingress: no locality (they are all in this zone).
fn ingress_assignment(cluster: &str, service: &IngressService) -> ClusterLoadAssignment {
    let local: Vec<Endpoint> = service
        .endpoints
        .iter()
        .map(|e| Endpoint {
            zone: None,
            ..e.clone()
        })
        .collect();
    load_assignment(cluster, &local)
}

fn validate_ingress(ctx: &ZoneIngressContext) -> Result<(), ZoneProxyError> {
    non_empty("name", &ctx.name)?;
    non_empty("zone", &ctx.zone)?;
    ip("address", &ctx.address)?;
    port("port", ctx.port)?;
    for (i, service) in ctx.services.iter().enumerate() {
        let at = |f: &str| format!("services[{i}].{f}");
        mesh_name(&at("mesh"), &service.mesh)?;
        service_name(&at("service"), &service.service)?;
        for (j, endpoint) in service.endpoints.iter().enumerate() {
            let at = |f: &str| format!("services[{i}].endpoints[{j}].{f}");
            ip(&at("address"), &endpoint.address)?;
            port(&at("port"), endpoint.port)?;
            if endpoint.weight == 0 {
                return Err(ZoneProxyError::ZeroWeight {
                    field: at("weight"),
                });
            }
            // Forwarding to another zone from an ingress could loop between zones.
            if let Some(zone) = endpoint.zone.as_deref().filter(|z| *z != ctx.zone) {
                return Err(ZoneProxyError::RemoteEndpoint {
                    field: at("zone"),
                    zone: ctx.zone.clone(),
                    endpoint_zone: zone.to_string(),
                });
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Zone egress
// ---------------------------------------------------------------------------------------------

/// Generates every Envoy resource of one zone egress (its listener; per remote service an EDS
/// cluster and its ClusterLoadAssignment; per MeshExternalService a STATIC or STRICT_DNS
/// cluster with its endpoints inline), sorted by type URL then name. The secrets come from
/// [`egress_secrets`], one pair per mesh with external services
/// ([`meshes_with_external_services`]). Without any route there is no listener.
pub fn generate_egress(ctx: &ZoneEgressContext) -> Result<Vec<EnvoyResource>, ZoneProxyError> {
    validate_egress(ctx)?;
    let mut resources = Vec::new();
    let mut chains = Chains::default();
    for mesh in &ctx.meshes {
        for remote in &mesh.remote_services {
            let cluster = egress_cluster_name(&mesh.mesh, &remote.service);
            chains.add(
                outbound_sni(&remote.service, &mesh.mesh),
                vec![tcp_proxy(&cluster)],
                None,
            )?;
            resources.push(Resource::Cluster(Box::new(eds_cluster(&cluster))));
            resources.push(Resource::ClusterLoadAssignment(load_assignment(
                &cluster,
                &remote_endpoints(&remote.zones),
            )));
        }
        for external in &mesh.external_services {
            let (filters, cluster) = external_service(&mesh.mesh, external);
            chains.add(
                external_sni(&external.name, &mesh.mesh),
                filters,
                Some(egress_mtls(&mesh.mesh)),
            )?;
            resources.push(Resource::Cluster(Box::new(cluster)));
        }
    }
    let name = egress_listener_name(&ctx.address, ctx.port);
    resources.extend(chains.listener(name, &ctx.address, ctx.port));
    collect(resources)
}

/// The meshes whose identity and CA secrets the egress's configuration refers to (those with
/// MeshExternalServices), sorted and without duplicates.
pub fn meshes_with_external_services(ctx: &ZoneEgressContext) -> Vec<&str> {
    ctx.meshes
        .iter()
        .filter(|m| !m.external_services.is_empty())
        .map(|m| m.mesh.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The egress's SDS secrets in one mesh: its certificate chain and key under
/// [`egress_identity_secret`] and the mesh CA under [`egress_mesh_ca_secret`], sorted by name.
pub fn egress_secrets(
    mesh: &str,
    identity_chain_pem: &str,
    identity_key_pem: &str,
    ca_pem: &str,
) -> Vec<EnvoyResource> {
    let identity = Secret {
        name: egress_identity_secret(mesh),
        tls_certificate: Some(TlsCertificate {
            certificate_chain: DataSource::InlineString(identity_chain_pem.to_string()),
            private_key: DataSource::InlineString(identity_key_pem.to_string()),
        }),
        validation_context: None,
    };
    let ca = Secret {
        name: egress_mesh_ca_secret(mesh),
        tls_certificate: None,
        validation_context: Some(CertificateValidationContext {
            trusted_ca: Some(DataSource::InlineString(ca_pem.to_string())),
            match_typed_subject_alt_names: Vec::new(),
        }),
    };
    let mut out = vec![
        EnvoyResource::new(&Resource::Secret(identity)),
        EnvoyResource::new(&Resource::Secret(ca)),
    ];
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The server side of mesh mTLS on an external service's chain: present the egress's identity
/// in `mesh`, require a client certificate from the mesh CA with a SPIFFE ID of the mesh.
fn egress_mtls(mesh: &str) -> TransportSocket {
    let mut validation = mesh_validation(StringMatcher::Prefix(format!("spiffe://{mesh}/")));
    validation.validation_context_sds_secret_config =
        SdsSecretConfig::ads(egress_mesh_ca_secret(mesh));
    TransportSocket::downstream_tls(DownstreamTlsContext {
        common_tls_context: CommonTlsContext {
            tls_certificate_sds_secret_configs: vec![SdsSecretConfig::ads(egress_identity_secret(
                mesh,
            ))],
            combined_validation_context: Some(validation),
            ..Default::default()
        },
        require_client_certificate: Some(true),
    })
}

/// The chain's filters and the cluster of one MeshExternalService.
fn external_service(mesh: &str, external: &ExternalService) -> (Vec<Filter>, Cluster) {
    let cluster_name = external_cluster_name(mesh, &external.name);
    let mut endpoints = external.endpoints.clone();
    endpoints.sort();
    endpoints.dedup();
    let dns = endpoints
        .iter()
        .any(|e| e.address.parse::<IpAddr>().is_err());

    let filters = match external.protocol {
        Protocol::Tcp => vec![tcp_proxy(&cluster_name)],
        Protocol::Http | Protocol::Http2 | Protocol::Grpc => {
            let route = RouteAction {
                cluster: cluster_name.clone(),
                timeout: Some(defaults::OUTBOUND_REQUEST_TIMEOUT),
                idle_timeout: None,
                retry_policy: None,
                // The application addressed the service by its mesh hostname; the outside
                // server expects its own name.
                auto_host_rewrite: dns.then_some(true),
            };
            vec![http_connection_manager(
                &stat_name(&cluster_name),
                &cluster_name,
                &external.name,
                route,
                vec![HttpFilter::router()],
                defaults::OUTBOUND_IDLE_TIMEOUT,
                defaults::OUTBOUND_STREAM_IDLE_TIMEOUT,
            )]
        }
    };

    let transport_socket = external
        .tls
        .as_ref()
        .filter(|tls| tls.enabled)
        .map(|tls| origination_tls(external.protocol, tls, &endpoints));
    let cluster = Cluster {
        name: cluster_name.clone(),
        discovery_type: if dns {
            DiscoveryType::StrictDns
        } else {
            DiscoveryType::Static
        },
        eds_cluster_config: None,
        connect_timeout: defaults::OUTBOUND_CONNECT_TIMEOUT,
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name,
            endpoints: vec![LocalityLbEndpoints {
                locality: None,
                lb_endpoints: endpoints
                    .iter()
                    .map(|e| LbEndpoint {
                        endpoint: model::Endpoint {
                            address: Address::socket(&e.address, e.port),
                        },
                        load_balancing_weight: None,
                    })
                    .collect(),
                load_balancing_weight: None,
                priority: None,
            }],
        }),
        circuit_breakers: None,
        outlier_detection: None,
        typed_extension_protocol_options: http_protocol_options(
            external.protocol,
            defaults::OUTBOUND_IDLE_TIMEOUT,
        ),
        transport_socket,
    };
    (filters, cluster)
}

/// The client side of the TLS the egress originates to an external service.
///
/// SNI: `serverName`, else the first DNS-name endpoint (sorted), else none. Verification:
/// `Secured` checks the chain against the CA (`caCert`, else [`SYSTEM_CA_BUNDLE`]) and the
/// server's DNS SANs against `subjectAltNames`, else the SNI (CA only when there is neither);
/// `SkipSAN` checks the chain only; `SkipAll` checks nothing. ALPN offers `h2` for HTTP/2 and
/// gRPC, `http/1.1` for HTTP, nothing for TCP.
fn origination_tls(
    protocol: Protocol,
    tls: &ExternalTls,
    endpoints: &[ExternalEndpoint],
) -> TransportSocket {
    let sni = tls.server_name.clone().or_else(|| {
        endpoints
            .iter()
            .find(|e| e.address.parse::<IpAddr>().is_err())
            .map(|e| e.address.clone())
    });
    let validation_context = match tls.verification {
        TlsVerification::SkipAll => None,
        mode => {
            let trusted_ca = match &tls.ca_cert {
                Some(CaCert::Inline(pem)) => DataSource::InlineString(pem.clone()),
                Some(CaCert::File(path)) => DataSource::Filename(path.clone()),
                None => DataSource::Filename(SYSTEM_CA_BUNDLE.to_string()),
            };
            let sans: Vec<String> = match mode {
                TlsVerification::Secured if !tls.subject_alt_names.is_empty() => {
                    tls.subject_alt_names.clone()
                }
                TlsVerification::Secured => sni.iter().cloned().collect(),
                _ => Vec::new(),
            };
            Some(CertificateValidationContext {
                trusted_ca: Some(trusted_ca),
                match_typed_subject_alt_names: sans
                    .into_iter()
                    .map(|san| SubjectAltNameMatcher {
                        san_type: SanType::Dns,
                        matcher: StringMatcher::Exact(san),
                    })
                    .collect(),
            })
        }
    };
    let alpn = match protocol {
        Protocol::Tcp => Vec::new(),
        Protocol::Http => vec!["http/1.1".to_string()],
        Protocol::Http2 | Protocol::Grpc => vec!["h2".to_string()],
    };
    TransportSocket::upstream_tls(UpstreamTlsContext {
        common_tls_context: CommonTlsContext {
            alpn_protocols: alpn,
            validation_context,
            ..Default::default()
        },
        sni,
    })
}

fn validate_egress(ctx: &ZoneEgressContext) -> Result<(), ZoneProxyError> {
    non_empty("name", &ctx.name)?;
    non_empty("zone", &ctx.zone)?;
    ip("address", &ctx.address)?;
    port("port", ctx.port)?;
    for (i, mesh) in ctx.meshes.iter().enumerate() {
        validate_egress_mesh(&format!("meshes[{i}]"), mesh)?;
    }
    Ok(())
}

fn validate_egress_mesh(path: &str, mesh: &EgressMesh) -> Result<(), ZoneProxyError> {
    mesh_name(&format!("{path}.mesh"), &mesh.mesh)?;
    for (i, remote) in mesh.remote_services.iter().enumerate() {
        let at = format!("{path}.remoteServices[{i}]");
        service_name(&format!("{at}.service"), &remote.service)?;
        for (j, zone) in remote.zones.iter().enumerate() {
            let at = |f: &str| format!("{at}.zones[{j}].{f}");
            non_empty(&at("zone"), &zone.zone)?;
            ip(&at("address"), &zone.address)?;
            port(&at("port"), zone.port)?;
        }
    }
    for (i, external) in mesh.external_services.iter().enumerate() {
        let at = format!("{path}.externalServices[{i}]");
        service_name(&format!("{at}.name"), &external.name)?;
        if external.endpoints.is_empty() {
            return Err(ZoneProxyError::Empty {
                field: format!("{at}.endpoints"),
            });
        }
        for (j, endpoint) in external.endpoints.iter().enumerate() {
            let at = |f: &str| format!("{at}.endpoints[{j}].{f}");
            host(&at("address"), &endpoint.address)?;
            port(&at("port"), endpoint.port)?;
        }
        if let Some(tls) = &external.tls {
            if let Some(server_name) = &tls.server_name {
                non_empty(&format!("{at}.tls.serverName"), server_name)?;
            }
            for (j, san) in tls.subject_alt_names.iter().enumerate() {
                non_empty(&format!("{at}.tls.subjectAltNames[{j}]"), san)?;
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------------------

/// The SNI-selected filter chains of a zone proxy's listener, kept sorted by SNI.
#[derive(Default)]
struct Chains {
    by_sni: BTreeMap<String, FilterChain>,
}

impl Chains {
    /// Adds the chain serving `sni` (TLS only); a second chain for the same SNI is an error,
    /// as Envoy could not tell them apart.
    fn add(
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

    /// The listener with the TLS inspector and every chain, and no default chain: a
    /// connection whose SNI matches no chain (or that is not TLS) is closed. `None` without
    /// chains.
    fn listener(self, name: String, address: &str, port: u16) -> Option<Resource> {
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
fn tcp_proxy(cluster: &str) -> Filter {
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
fn collect(resources: Vec<Resource>) -> Result<Vec<EnvoyResource>, ZoneProxyError> {
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

fn non_empty(field: &str, value: &str) -> Result<(), ZoneProxyError> {
    if value.is_empty() {
        return Err(ZoneProxyError::Empty {
            field: field.to_string(),
        });
    }
    Ok(())
}

fn ip(field: &str, value: &str) -> Result<(), ZoneProxyError> {
    value
        .parse::<IpAddr>()
        .map(|_| ())
        .map_err(|_| ZoneProxyError::InvalidAddress {
            field: field.to_string(),
            value: value.to_string(),
        })
}

/// An IP address or a DNS name (letters, digits, `-` and `_` in dot-separated labels).
fn host(field: &str, value: &str) -> Result<(), ZoneProxyError> {
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

fn port(field: &str, value: u16) -> Result<(), ZoneProxyError> {
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

fn mesh_name(field: &str, value: &str) -> Result<(), ZoneProxyError> {
    checked_name(field, value, MESH_FORBIDDEN)
}

fn service_name(field: &str, value: &str) -> Result<(), ZoneProxyError> {
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
    use crate::model::type_urls;
    use crate::zone_context::EgressRemoteService;

    fn ingress(services: Vec<IngressService>) -> ZoneIngressContext {
        ZoneIngressContext {
            name: "ingress-1".into(),
            zone: "east".into(),
            address: "10.0.0.5".into(),
            port: 10001,
            services,
        }
    }

    fn local(address: &str) -> Endpoint {
        Endpoint {
            address: address.into(),
            port: 8080,
            weight: 1,
            zone: None,
        }
    }

    fn service(mesh: &str, name: &str, endpoints: Vec<Endpoint>) -> IngressService {
        IngressService {
            mesh: mesh.into(),
            service: name.into(),
            endpoints,
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
    fn ingress_routes_each_mesh_service_by_sni() {
        let ctx = ingress(vec![
            service("b-mesh", "web", vec![local("10.0.0.9")]),
            service("a-mesh", "web", vec![local("10.0.0.8"), local("10.0.0.7")]),
        ]);
        let resources = generate_ingress(&ctx).expect("generates");
        let listener = resources
            .iter()
            .find(|r| r.type_url == type_urls::LISTENER)
            .expect("listener");
        let chains = listener.json["filter_chains"].as_array().expect("chains");
        let snis: Vec<_> = chains
            .iter()
            .map(|c| c["filter_chain_match"]["server_names"][0].clone())
            .collect();
        assert_eq!(snis, vec!["web{mesh=a-mesh}", "web{mesh=b-mesh}"]);
        assert!(listener.json.get("default_filter_chain").is_none());
        assert!(chains.iter().all(|c| c.get("transport_socket").is_none()));
        let clusters: Vec<_> = resources
            .iter()
            .filter(|r| r.type_url == type_urls::CLUSTER)
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(clusters, vec!["ingress:a-mesh:web", "ingress:b-mesh:web"]);
    }

    #[test]
    fn ingress_output_ignores_input_order() {
        let a = ingress(vec![
            service("m", "a", vec![local("10.0.0.1"), local("10.0.0.2")]),
            service("m", "b", vec![]),
        ]);
        let mut b = a.clone();
        b.services.reverse();
        b.services[1].endpoints.reverse();
        assert_eq!(generate_ingress(&a), generate_ingress(&b));
    }

    #[test]
    fn ingress_rejects_remote_endpoints_and_duplicates() {
        let mut remote = local("10.0.0.1");
        remote.zone = Some("west".into());
        let err = generate_ingress(&ingress(vec![service("m", "a", vec![remote])]));
        assert!(matches!(err, Err(ZoneProxyError::RemoteEndpoint { .. })));
        let mut own = local("10.0.0.1");
        own.zone = Some("east".into());
        assert!(generate_ingress(&ingress(vec![service("m", "a", vec![own])])).is_ok());
        let dup = ingress(vec![service("m", "a", vec![]), service("m", "a", vec![])]);
        assert_eq!(
            generate_ingress(&dup),
            Err(ZoneProxyError::DuplicateSni {
                sni: "a{mesh=m}".into()
            })
        );
        let bad = ingress(vec![service("m:x", "a", vec![])]);
        assert!(matches!(
            generate_ingress(&bad),
            Err(ZoneProxyError::InvalidName { .. })
        ));
    }

    #[test]
    fn no_routes_no_listener() {
        let resources = generate_ingress(&ingress(vec![])).expect("generates");
        assert!(resources.is_empty());
        let egress = ZoneEgressContext {
            name: "egress-1".into(),
            zone: "east".into(),
            address: "10.0.0.6".into(),
            port: 10002,
            meshes: vec![EgressMesh {
                mesh: "m".into(),
                remote_services: vec![],
                external_services: vec![],
            }],
        };
        assert!(generate_egress(&egress).expect("generates").is_empty());
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

    fn external(protocol: Protocol, address: &str, tls: Option<ExternalTls>) -> ExternalService {
        ExternalService {
            name: "ext".into(),
            protocol,
            endpoints: vec![ExternalEndpoint {
                address: address.into(),
                port: 443,
            }],
            tls,
        }
    }

    fn egress(mesh: EgressMesh) -> ZoneEgressContext {
        ZoneEgressContext {
            name: "egress-1".into(),
            zone: "east".into(),
            address: "10.0.0.6".into(),
            port: 10002,
            meshes: vec![mesh],
        }
    }

    #[test]
    fn egress_terminates_mtls_only_for_external_services() {
        let tls = ExternalTls {
            enabled: true,
            server_name: None,
            verification: TlsVerification::Secured,
            ca_cert: None,
            subject_alt_names: vec![],
        };
        let ctx = egress(EgressMesh {
            mesh: "m".into(),
            remote_services: vec![EgressRemoteService {
                service: "ext".into(),
                zones: vec![zone_ingress("west", "172.16.0.2", 1)],
            }],
            external_services: vec![external(Protocol::Http, "api.example.com", Some(tls))],
        });
        let resources = generate_egress(&ctx).expect("generates");
        let listener = resources
            .iter()
            .find(|r| r.type_url == type_urls::LISTENER)
            .expect("listener");
        let chains = listener.json["filter_chains"].as_array().expect("chains");
        assert_eq!(chains.len(), 2);
        assert_eq!(chains[0]["name"], "ext{mesh=m,external}");
        assert_eq!(
            chains[0]["transport_socket"]["typed_config"]["require_client_certificate"],
            true
        );
        assert_eq!(chains[1]["name"], "ext{mesh=m}");
        assert!(chains[1].get("transport_socket").is_none());

        let cluster = resources
            .iter()
            .find(|r| r.name == "external:m:ext")
            .expect("external cluster");
        assert_eq!(cluster.json["type"], "STRICT_DNS");
        let tls = &cluster.json["transport_socket"]["typed_config"];
        assert_eq!(tls["sni"], "api.example.com");
        let validation = &tls["common_tls_context"]["validation_context"];
        assert_eq!(validation["trusted_ca"]["filename"], SYSTEM_CA_BUNDLE);
        assert_eq!(
            validation["match_typed_subject_alt_names"][0]["matcher"]["exact"],
            "api.example.com"
        );
        assert_eq!(meshes_with_external_services(&ctx), vec!["m"]);
    }

    #[test]
    fn external_tls_modes() {
        let base = ExternalTls {
            enabled: true,
            server_name: Some("db.internal".into()),
            verification: TlsVerification::SkipSAN,
            ca_cert: Some(CaCert::Inline("PEM".into())),
            subject_alt_names: vec![],
        };
        let tls_of = |tls: ExternalTls| {
            let (_, cluster) =
                external_service("m", &external(Protocol::Tcp, "10.1.0.1", Some(tls)));
            let json = serde_json::to_value(&cluster).expect("json");
            (
                cluster.discovery_type,
                json["transport_socket"]["typed_config"].clone(),
            )
        };
        let (discovery, skip_san) = tls_of(base.clone());
        assert_eq!(discovery, DiscoveryType::Static);
        assert_eq!(skip_san["sni"], "db.internal");
        let validation = &skip_san["common_tls_context"]["validation_context"];
        assert_eq!(validation["trusted_ca"]["inline_string"], "PEM");
        assert!(validation.get("match_typed_subject_alt_names").is_none());
        let (_, skip_all) = tls_of(ExternalTls {
            verification: TlsVerification::SkipAll,
            ..base.clone()
        });
        assert!(
            skip_all["common_tls_context"]
                .get("validation_context")
                .is_none()
        );
        let (_, disabled) = tls_of(ExternalTls {
            enabled: false,
            ..base
        });
        assert!(disabled.is_null());
    }

    #[test]
    fn external_endpoints_must_be_hosts() {
        let ctx = egress(EgressMesh {
            mesh: "m".into(),
            remote_services: vec![],
            external_services: vec![external(Protocol::Tcp, "not a host", None)],
        });
        assert_eq!(
            generate_egress(&ctx),
            Err(ZoneProxyError::InvalidHost {
                field: "meshes[0].externalServices[0].endpoints[0].address".into(),
                value: "not a host".into()
            })
        );
    }
}
