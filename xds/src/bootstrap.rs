//! The Envoy bootstrap a dataplane starts with: who it is (node), where its admin API listens,
//! and how to reach the zone control plane's delta ADS server for everything else.

use std::net::IpAddr;

use serde_json::{Value, json};

use crate::model::{
    self, Address, CertificateValidationContext, Cluster, ClusterLoadAssignment, CommonTlsContext,
    DataSource, DiscoveryType, ExplicitHttpConfig, Http2ProtocolOptions, LbEndpoint,
    LocalityLbEndpoints, TransportSocket, TypedConfig, UpstreamHttpProtocolOptions,
    UpstreamTlsContext, names,
};

/// The static cluster through which Envoy reaches the ADS server.
pub const ADS_CLUSTER: &str = "ads_cluster";

/// How long Envoy waits for a TCP connection to the control plane.
pub const ADS_CONNECT_TIMEOUT: model::Duration = model::Duration::from_secs(5);

/// What a bootstrap is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapParams {
    pub mesh: String,
    /// The Dataplane's name.
    pub name: String,
    /// The `kuma.io/service` of the proxy (Envoy's node cluster, used in its stats).
    pub service: String,
    /// `dataplane`, `ingress` or `egress`.
    pub proxy_type: String,
    /// The control plane's xDS host: an IP address or a DNS name.
    pub xds_host: String,
    pub xds_port: u16,
    /// The CA that signed the control plane's serving certificate; without it Envoy does not
    /// verify the control plane (acceptable only for local development).
    pub ca_cert_pem: Option<String>,
    /// The dataplane token, sent to the control plane in the node metadata.
    pub token: Option<String>,
    pub admin_port: u16,
}

/// The node ID a dataplane presents: `<mesh>.<name>`.
pub fn node_id(mesh: &str, name: &str) -> String {
    if mesh.is_empty() {
        // A zone proxy (ZoneIngress, ZoneEgress) belongs to no mesh.
        name.to_string()
    } else {
        format!("{mesh}.{name}")
    }
}

/// The bootstrap JSON (Envoy's v3 `Bootstrap`). Listeners, clusters, endpoints and secrets all
/// come over one delta ADS stream to `ads_cluster` (HTTP/2 over TLS, SNI = the host).
pub fn bootstrap(params: &BootstrapParams) -> Value {
    let mut metadata = serde_json::Map::new();
    if let Some(token) = &params.token {
        metadata.insert("dataplane.token".into(), json!(token));
    }
    metadata.insert("dataplane.mesh".into(), json!(params.mesh));
    metadata.insert("dataplane.name".into(), json!(params.name));
    metadata.insert("dataplane.proxyType".into(), json!(params.proxy_type));

    let ads_config_source = json!({"ads": {}, "resource_api_version": "V3"});
    json!({
        "node": {
            "id": node_id(&params.mesh, &params.name),
            "cluster": params.service,
            "metadata": metadata,
        },
        "admin": {
            "address": Address::socket("127.0.0.1", params.admin_port),
        },
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": ADS_CLUSTER}}],
                "set_node_on_first_message_only": true,
            },
            "cds_config": ads_config_source,
            "lds_config": ads_config_source,
        },
        "static_resources": {
            "clusters": [ads_cluster(params)],
        },
        "layered_runtime": {
            "layers": [
                {"name": "static", "static_layer": {}},
                {"name": "admin", "admin_layer": {}},
            ],
        },
    })
}

fn ads_cluster(params: &BootstrapParams) -> Cluster {
    let discovery_type = if params.xds_host.parse::<IpAddr>().is_ok() {
        DiscoveryType::Static
    } else {
        DiscoveryType::StrictDns
    };
    let http2 = UpstreamHttpProtocolOptions {
        common_http_protocol_options: None,
        explicit_http_config: ExplicitHttpConfig::Http2ProtocolOptions(Http2ProtocolOptions {}),
    };
    let tls = UpstreamTlsContext {
        common_tls_context: CommonTlsContext {
            validation_context: params.ca_cert_pem.as_ref().map(|ca| {
                CertificateValidationContext {
                    trusted_ca: Some(DataSource::InlineString(ca.clone())),
                    match_typed_subject_alt_names: Vec::new(),
                }
            }),
            ..Default::default()
        },
        sni: Some(params.xds_host.clone()),
    };
    Cluster {
        name: ADS_CLUSTER.to_string(),
        discovery_type,
        eds_cluster_config: None,
        connect_timeout: ADS_CONNECT_TIMEOUT,
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: ADS_CLUSTER.to_string(),
            endpoints: vec![LocalityLbEndpoints {
                locality: None,
                lb_endpoints: vec![LbEndpoint {
                    endpoint: model::Endpoint {
                        address: Address::socket(&params.xds_host, params.xds_port),
                    },
                    load_balancing_weight: None,
                }],
                load_balancing_weight: None,
                priority: None,
            }],
        }),
        circuit_breakers: None,
        outlier_detection: None,
        typed_extension_protocol_options: [(
            names::UPSTREAM_HTTP_PROTOCOL_OPTIONS.to_string(),
            TypedConfig::UpstreamHttpProtocolOptions(http2),
        )]
        .into_iter()
        .collect(),
        transport_socket: Some(TransportSocket::upstream_tls(tls)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(host: &str) -> BootstrapParams {
        BootstrapParams {
            mesh: "default".into(),
            name: "web-1".into(),
            service: "web".into(),
            proxy_type: "dataplane".into(),
            xds_host: host.into(),
            xds_port: 5678,
            ca_cert_pem: None,
            token: Some("TOKEN".into()),
            admin_port: 9901,
        }
    }

    #[test]
    fn node_and_ads_are_set() {
        let b = bootstrap(&params("10.0.0.5"));
        assert_eq!(b["node"]["id"], "default.web-1");
        assert_eq!(b["node"]["metadata"]["dataplane.token"], "TOKEN");
        assert_eq!(
            b["dynamic_resources"]["ads_config"]["api_type"],
            "DELTA_GRPC"
        );
        let cluster = &b["static_resources"]["clusters"][0];
        assert_eq!(cluster["type"], "STATIC");
        assert_eq!(
            cluster["transport_socket"]["typed_config"]["sni"],
            "10.0.0.5"
        );
    }

    #[test]
    fn dns_hosts_use_strict_dns() {
        let b = bootstrap(&params("cp.example.internal"));
        assert_eq!(b["static_resources"]["clusters"][0]["type"], "STRICT_DNS");
        let mut p = params("cp.example.internal");
        p.token = None;
        p.ca_cert_pem = Some("PEM".into());
        let b = bootstrap(&p);
        assert!(b["node"]["metadata"].get("dataplane.token").is_none());
        let common = &b["static_resources"]["clusters"][0]["transport_socket"]["typed_config"]["common_tls_context"];
        assert_eq!(
            common["validation_context"]["trusted_ca"]["inline_string"],
            "PEM"
        );
    }
}
