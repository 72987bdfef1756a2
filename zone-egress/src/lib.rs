//! The zone egress's Envoy resources, generated (pure and deterministic) from a
//! `ZoneEgressContext`: one listener with the TLS inspector and, per mesh, (a) one pass-through
//! chain per remote service (the sidecar's SNI, forwarded to the other zones' ingresses,
//! weighted by instance count, one locality per zone) and (b) one chain per
//! MeshExternalService (`external_sni`) that terminates mesh mTLS with the egress's identity in
//! that mesh and originates the outside connection (plaintext or TLS, TCP or HTTP). The zone CP
//! feeds the context from its index (`zone-cp/src/zone_proxies.rs`); `xds/ZONE-PROXIES.md`
//! describes the traffic.

use std::collections::BTreeSet;
use std::net::IpAddr;

use atoll_xds::context::Protocol;
use atoll_xds::generate::{
    defaults, http_connection_manager, http_protocol_options, load_assignment, mesh_validation,
    stat_name,
};
use atoll_xds::model::{
    self, Address, CertificateValidationContext, Cluster, ClusterLoadAssignment, CommonTlsContext,
    DataSource, DiscoveryType, DownstreamTlsContext, Filter, HttpFilter, LbEndpoint,
    LocalityLbEndpoints, Resource, RouteAction, SanType, SdsSecretConfig, Secret, StringMatcher,
    SubjectAltNameMatcher, TlsCertificate, TransportSocket, UpstreamTlsContext,
};
use atoll_xds::proto::EnvoyResource;
use atoll_xds::zone_context::{
    CaCert, EgressMesh, ExternalEndpoint, ExternalService, ExternalTls, TlsVerification,
    ZoneEgressContext,
};
use atoll_xds::zone_proxy::{
    Chains, SYSTEM_CA_BUNDLE, ZoneProxyError, collect, egress_cluster_name, egress_identity_secret,
    egress_listener_name, egress_mesh_ca_secret, external_cluster_name, external_sni, host, ip,
    mesh_name, non_empty, outbound_sni, port, remote_endpoints, service_name, tcp_proxy,
};

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
            resources.extend(chains.pass_through(
                outbound_sni(&remote.service, &mesh.mesh),
                load_assignment(&cluster, &remote_endpoints(&remote.zones)),
            )?);
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
        EnvoyResource::from_model(Resource::Secret(identity)),
        EnvoyResource::from_model(Resource::Secret(ca)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_xds::model::type_urls;
    use atoll_xds::zone_context::{EgressRemoteService, RemoteZoneIngress};

    fn zone_ingress(zone: &str, address: &str, instances: u32) -> RemoteZoneIngress {
        RemoteZoneIngress {
            zone: zone.into(),
            address: address.into(),
            port: 10001,
            instances,
        }
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
    fn no_routes_no_listener() {
        let ctx = egress(EgressMesh {
            mesh: "m".into(),
            remote_services: vec![],
            external_services: vec![],
        });
        assert!(generate_egress(&ctx).expect("generates").is_empty());
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
