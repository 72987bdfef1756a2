//! The zone ingress's Envoy resources, generated (pure and deterministic) from a
//! `ZoneIngressContext`: one listener with the TLS inspector and one filter chain per
//! `(mesh, service)`, selected by the SNI the sidecar sends (`outbound_sni`), that passes the
//! still-encrypted connection to an EDS cluster of the service's local endpoints. The ingress
//! never decrypts: the two sidecars do mTLS end to end. An unknown SNI matches no chain and
//! Envoy closes the connection (there is no default chain). The zone CP feeds the context from
//! its index (`zone-cp/src/zone_proxies.rs`); `xds/ZONE-PROXIES.md` describes the traffic.

use atoll_xds::context::Endpoint;
use atoll_xds::generate::load_assignment;
use atoll_xds::model::ClusterLoadAssignment;
use atoll_xds::proto::EnvoyResource;
use atoll_xds::zone_context::{IngressService, ZoneIngressContext};
use atoll_xds::zone_proxy::{
    Chains, ZoneProxyError, collect, ingress_cluster_name, ingress_listener_name, ip, mesh_name,
    non_empty, outbound_sni, port, service_name,
};

/// Generates every Envoy resource of one zone ingress (its listener, and per service an EDS
/// cluster and its ClusterLoadAssignment), sorted by type URL then name. Without any service
/// there is no listener (Envoy refuses a listener without filter chains).
pub fn generate_ingress(ctx: &ZoneIngressContext) -> Result<Vec<EnvoyResource>, ZoneProxyError> {
    validate_ingress(ctx)?;
    let mut resources = Vec::new();
    let mut chains = Chains::default();
    for service in &ctx.services {
        let cluster = ingress_cluster_name(&service.mesh, &service.service);
        resources.extend(chains.pass_through(
            outbound_sni(&service.service, &service.mesh),
            ingress_assignment(&cluster, service),
        )?);
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

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_xds::model::type_urls;

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
    fn no_services_no_listener() {
        let resources = generate_ingress(&ingress(vec![])).expect("generates");
        assert!(resources.is_empty());
    }
}
