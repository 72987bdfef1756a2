//! The model converted to Envoy's protobuf messages (`envoy-types`) for the wire.
//!
//! Every model type has a `ToProto` impl that builds the matching `envoy_types::pb` message;
//! typed configs are packed into `google.protobuf.Any`. `EnvoyResource` bundles one top-level
//! resource in both forms (JSON for people and golden files, `Any` for xDS) with a stable
//! version string.

use std::collections::HashMap;

use atoll_core::fnv::Fnv1a;

use envoy_types::pb::envoy::config::cluster::v3 as cluster_pb;
use envoy_types::pb::envoy::config::core::v3 as core_pb;
use envoy_types::pb::envoy::config::endpoint::v3 as endpoint_pb;
use envoy_types::pb::envoy::config::listener::v3 as listener_pb;
use envoy_types::pb::envoy::config::rbac::v3 as rbac_pb;
use envoy_types::pb::envoy::config::route::v3 as route_pb;
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3 as http_rbac_pb;
use envoy_types::pb::envoy::extensions::filters::http::router::v3 as router_pb;
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3 as tls_inspector_pb;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm_pb;
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3 as network_rbac_pb;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3 as tcp_proxy_pb;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3 as tls_pb;
use envoy_types::pb::envoy::extensions::upstreams::http::v3 as upstream_http_pb;
use envoy_types::pb::envoy::r#type::matcher::v3 as matcher_pb;
use envoy_types::pb::google::protobuf::{Any, BoolValue, Duration as PbDuration, UInt32Value};
use prost::{Message, Name};

use crate::model;

/// Conversion of a model type into its Envoy protobuf message.
pub trait ToProto {
    type Proto;
    fn to_proto(&self) -> Self::Proto;
}

/// Packs a message into Envoy's `google.protobuf.Any`.
pub fn pack<M: Message + Name>(message: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: message.encode_to_vec(),
    }
}

fn u32_value(v: Option<u32>) -> Option<UInt32Value> {
    v.map(|value| UInt32Value { value })
}

fn duration(d: Option<model::Duration>) -> Option<PbDuration> {
    d.map(|d| d.to_proto())
}

impl ToProto for model::Duration {
    type Proto = PbDuration;
    fn to_proto(&self) -> PbDuration {
        PbDuration {
            seconds: self.seconds(),
            nanos: self.nanos(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Core
// ---------------------------------------------------------------------------------------------

impl ToProto for model::Address {
    type Proto = core_pb::Address;
    fn to_proto(&self) -> core_pb::Address {
        core_pb::Address {
            address: Some(core_pb::address::Address::SocketAddress(
                core_pb::SocketAddress {
                    address: self.socket_address.address.clone(),
                    port_specifier: Some(core_pb::socket_address::PortSpecifier::PortValue(
                        self.socket_address.port_value,
                    )),
                    ..Default::default()
                },
            )),
        }
    }
}

impl ToProto for model::ConfigSource {
    type Proto = core_pb::ConfigSource;
    fn to_proto(&self) -> core_pb::ConfigSource {
        core_pb::ConfigSource {
            resource_api_version: match self.resource_api_version {
                model::ApiVersion::V3 => core_pb::ApiVersion::V3 as i32,
            },
            config_source_specifier: Some(core_pb::config_source::ConfigSourceSpecifier::Ads(
                core_pb::AggregatedConfigSource {},
            )),
            ..Default::default()
        }
    }
}

impl ToProto for model::DataSource {
    type Proto = core_pb::DataSource;
    fn to_proto(&self) -> core_pb::DataSource {
        let specifier = match self {
            model::DataSource::InlineString(s) => {
                core_pb::data_source::Specifier::InlineString(s.clone())
            }
            model::DataSource::Filename(f) => core_pb::data_source::Specifier::Filename(f.clone()),
        };
        core_pb::DataSource {
            specifier: Some(specifier),
            ..Default::default()
        }
    }
}

impl ToProto for model::TrafficDirection {
    type Proto = i32;
    fn to_proto(&self) -> i32 {
        match self {
            model::TrafficDirection::Inbound => core_pb::TrafficDirection::Inbound as i32,
            model::TrafficDirection::Outbound => core_pb::TrafficDirection::Outbound as i32,
        }
    }
}

impl ToProto for model::TransportSocket {
    type Proto = core_pb::TransportSocket;
    fn to_proto(&self) -> core_pb::TransportSocket {
        core_pb::TransportSocket {
            name: self.name.clone(),
            config_type: Some(core_pb::transport_socket::ConfigType::TypedConfig(
                self.typed_config.to_proto(),
            )),
        }
    }
}

impl ToProto for model::CommonHttpProtocolOptions {
    type Proto = core_pb::HttpProtocolOptions;
    fn to_proto(&self) -> core_pb::HttpProtocolOptions {
        core_pb::HttpProtocolOptions {
            idle_timeout: duration(self.idle_timeout),
            ..Default::default()
        }
    }
}

impl ToProto for model::StringMatcher {
    type Proto = matcher_pb::StringMatcher;
    fn to_proto(&self) -> matcher_pb::StringMatcher {
        let pattern = match self {
            model::StringMatcher::Exact(s) => {
                matcher_pb::string_matcher::MatchPattern::Exact(s.clone())
            }
            model::StringMatcher::Prefix(s) => {
                matcher_pb::string_matcher::MatchPattern::Prefix(s.clone())
            }
        };
        matcher_pb::StringMatcher {
            match_pattern: Some(pattern),
            ignore_case: false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Typed configs
// ---------------------------------------------------------------------------------------------

impl ToProto for model::TypedConfig {
    type Proto = Any;
    fn to_proto(&self) -> Any {
        match self {
            model::TypedConfig::TcpProxy(c) => pack(&c.to_proto()),
            model::TypedConfig::HttpConnectionManager(c) => pack(&c.to_proto()),
            model::TypedConfig::NetworkRbac(c) => pack(&c.to_proto()),
            model::TypedConfig::HttpRbac(c) => pack(&c.to_proto()),
            model::TypedConfig::Router(_) => pack(&router_pb::Router::default()),
            model::TypedConfig::TlsInspector(_) => pack(&tls_inspector_pb::TlsInspector::default()),
            model::TypedConfig::DownstreamTlsContext(c) => pack(&c.to_proto()),
            model::TypedConfig::UpstreamTlsContext(c) => pack(&c.to_proto()),
            model::TypedConfig::UpstreamHttpProtocolOptions(c) => pack(&c.to_proto()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Listener
// ---------------------------------------------------------------------------------------------

impl ToProto for model::Listener {
    type Proto = listener_pb::Listener;
    fn to_proto(&self) -> listener_pb::Listener {
        listener_pb::Listener {
            name: self.name.clone(),
            address: Some(self.address.to_proto()),
            filter_chains: self.filter_chains.iter().map(ToProto::to_proto).collect(),
            listener_filters: self
                .listener_filters
                .iter()
                .map(ToProto::to_proto)
                .collect(),
            traffic_direction: self
                .traffic_direction
                .map(|d| d.to_proto())
                .unwrap_or_default(),
            ..Default::default()
        }
    }
}

impl ToProto for model::ListenerFilter {
    type Proto = listener_pb::ListenerFilter;
    fn to_proto(&self) -> listener_pb::ListenerFilter {
        listener_pb::ListenerFilter {
            name: self.name.clone(),
            config_type: Some(listener_pb::listener_filter::ConfigType::TypedConfig(
                self.typed_config.to_proto(),
            )),
            ..Default::default()
        }
    }
}

impl ToProto for model::FilterChain {
    type Proto = listener_pb::FilterChain;
    fn to_proto(&self) -> listener_pb::FilterChain {
        listener_pb::FilterChain {
            name: self.name.clone().unwrap_or_default(),
            filter_chain_match: self.filter_chain_match.as_ref().map(|m| {
                listener_pb::FilterChainMatch {
                    transport_protocol: m.transport_protocol.clone().unwrap_or_default(),
                    server_names: m.server_names.clone(),
                    ..Default::default()
                }
            }),
            filters: self.filters.iter().map(ToProto::to_proto).collect(),
            transport_socket: self.transport_socket.as_ref().map(ToProto::to_proto),
            ..Default::default()
        }
    }
}

impl ToProto for model::Filter {
    type Proto = listener_pb::Filter;
    fn to_proto(&self) -> listener_pb::Filter {
        listener_pb::Filter {
            name: self.name.clone(),
            config_type: Some(listener_pb::filter::ConfigType::TypedConfig(
                self.typed_config.to_proto(),
            )),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Network and HTTP filters
// ---------------------------------------------------------------------------------------------

impl ToProto for model::TcpProxy {
    type Proto = tcp_proxy_pb::TcpProxy;
    fn to_proto(&self) -> tcp_proxy_pb::TcpProxy {
        tcp_proxy_pb::TcpProxy {
            stat_prefix: self.stat_prefix.clone(),
            cluster_specifier: Some(tcp_proxy_pb::tcp_proxy::ClusterSpecifier::Cluster(
                self.cluster.clone(),
            )),
            idle_timeout: duration(self.idle_timeout),
            max_connect_attempts: u32_value(self.max_connect_attempts),
            ..Default::default()
        }
    }
}

impl ToProto for model::NetworkRbac {
    type Proto = network_rbac_pb::Rbac;
    fn to_proto(&self) -> network_rbac_pb::Rbac {
        network_rbac_pb::Rbac {
            stat_prefix: self.stat_prefix.clone(),
            rules: self.rules.as_ref().map(ToProto::to_proto),
            shadow_rules: self.shadow_rules.as_ref().map(ToProto::to_proto),
            shadow_rules_stat_prefix: self.shadow_rules_stat_prefix.clone().unwrap_or_default(),
            ..Default::default()
        }
    }
}

impl ToProto for model::HttpRbac {
    type Proto = http_rbac_pb::Rbac;
    fn to_proto(&self) -> http_rbac_pb::Rbac {
        http_rbac_pb::Rbac {
            rules: self.rules.as_ref().map(ToProto::to_proto),
            shadow_rules: self.shadow_rules.as_ref().map(ToProto::to_proto),
            shadow_rules_stat_prefix: self.shadow_rules_stat_prefix.clone().unwrap_or_default(),
            ..Default::default()
        }
    }
}

impl ToProto for model::HttpConnectionManager {
    type Proto = hcm_pb::HttpConnectionManager;
    fn to_proto(&self) -> hcm_pb::HttpConnectionManager {
        let codec_type = match self.codec_type {
            model::CodecType::Auto => hcm_pb::http_connection_manager::CodecType::Auto,
            model::CodecType::Http1 => hcm_pb::http_connection_manager::CodecType::Http1,
            model::CodecType::Http2 => hcm_pb::http_connection_manager::CodecType::Http2,
        };
        hcm_pb::HttpConnectionManager {
            stat_prefix: self.stat_prefix.clone(),
            codec_type: codec_type as i32,
            route_specifier: Some(
                hcm_pb::http_connection_manager::RouteSpecifier::RouteConfig(
                    self.route_config.to_proto(),
                ),
            ),
            http_filters: self.http_filters.iter().map(ToProto::to_proto).collect(),
            common_http_protocol_options: self
                .common_http_protocol_options
                .as_ref()
                .map(ToProto::to_proto),
            stream_idle_timeout: duration(self.stream_idle_timeout),
            ..Default::default()
        }
    }
}

impl ToProto for model::HttpFilter {
    type Proto = hcm_pb::HttpFilter;
    fn to_proto(&self) -> hcm_pb::HttpFilter {
        hcm_pb::HttpFilter {
            name: self.name.clone(),
            config_type: Some(hcm_pb::http_filter::ConfigType::TypedConfig(
                self.typed_config.to_proto(),
            )),
            ..Default::default()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// RBAC
// ---------------------------------------------------------------------------------------------

impl ToProto for model::Rbac {
    type Proto = rbac_pb::Rbac;
    fn to_proto(&self) -> rbac_pb::Rbac {
        let action = match self.action {
            model::RbacAction::Allow => rbac_pb::rbac::Action::Allow,
            model::RbacAction::Deny => rbac_pb::rbac::Action::Deny,
        };
        rbac_pb::Rbac {
            action: action as i32,
            policies: self
                .policies
                .iter()
                .map(|(name, policy)| (name.clone(), policy.to_proto()))
                .collect::<HashMap<_, _>>(),
            ..Default::default()
        }
    }
}

impl ToProto for model::Policy {
    type Proto = rbac_pb::Policy;
    fn to_proto(&self) -> rbac_pb::Policy {
        rbac_pb::Policy {
            permissions: self.permissions.iter().map(ToProto::to_proto).collect(),
            principals: self.principals.iter().map(ToProto::to_proto).collect(),
            ..Default::default()
        }
    }
}

impl ToProto for model::Permission {
    type Proto = rbac_pb::Permission;
    fn to_proto(&self) -> rbac_pb::Permission {
        let rule = match self {
            model::Permission::Any(any) => rbac_pb::permission::Rule::Any(*any),
        };
        rbac_pb::Permission { rule: Some(rule) }
    }
}

impl ToProto for model::Principal {
    type Proto = rbac_pb::Principal;
    fn to_proto(&self) -> rbac_pb::Principal {
        use rbac_pb::principal::Identifier;
        let set = |s: &model::PrincipalSet| rbac_pb::principal::Set {
            ids: s.ids.iter().map(ToProto::to_proto).collect(),
        };
        let identifier = match self {
            model::Principal::Any(any) => Identifier::Any(*any),
            model::Principal::Authenticated(a) => {
                Identifier::Authenticated(rbac_pb::principal::Authenticated {
                    principal_name: Some(a.principal_name.to_proto()),
                })
            }
            model::Principal::AndIds(s) => Identifier::AndIds(set(s)),
            model::Principal::OrIds(s) => Identifier::OrIds(set(s)),
            model::Principal::NotId(p) => Identifier::NotId(Box::new(p.to_proto())),
        };
        rbac_pb::Principal {
            identifier: Some(identifier),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

impl ToProto for model::RouteConfiguration {
    type Proto = route_pb::RouteConfiguration;
    fn to_proto(&self) -> route_pb::RouteConfiguration {
        route_pb::RouteConfiguration {
            name: self.name.clone(),
            virtual_hosts: self.virtual_hosts.iter().map(ToProto::to_proto).collect(),
            ..Default::default()
        }
    }
}

impl ToProto for model::VirtualHost {
    type Proto = route_pb::VirtualHost;
    fn to_proto(&self) -> route_pb::VirtualHost {
        route_pb::VirtualHost {
            name: self.name.clone(),
            domains: self.domains.clone(),
            routes: self.routes.iter().map(ToProto::to_proto).collect(),
            ..Default::default()
        }
    }
}

impl ToProto for model::Route {
    type Proto = route_pb::Route;
    fn to_proto(&self) -> route_pb::Route {
        route_pb::Route {
            name: self.name.clone().unwrap_or_default(),
            r#match: Some(route_pb::RouteMatch {
                path_specifier: Some(route_pb::route_match::PathSpecifier::Prefix(
                    self.route_match.prefix.clone(),
                )),
                ..Default::default()
            }),
            action: Some(route_pb::route::Action::Route(self.route.to_proto())),
            ..Default::default()
        }
    }
}

impl ToProto for model::RouteAction {
    type Proto = route_pb::RouteAction;
    fn to_proto(&self) -> route_pb::RouteAction {
        route_pb::RouteAction {
            cluster_specifier: Some(route_pb::route_action::ClusterSpecifier::Cluster(
                self.cluster.clone(),
            )),
            timeout: duration(self.timeout),
            idle_timeout: duration(self.idle_timeout),
            retry_policy: self.retry_policy.as_ref().map(ToProto::to_proto),
            host_rewrite_specifier: self.auto_host_rewrite.map(|value| {
                route_pb::route_action::HostRewriteSpecifier::AutoHostRewrite(BoolValue { value })
            }),
            ..Default::default()
        }
    }
}

impl ToProto for model::RetryPolicy {
    type Proto = route_pb::RetryPolicy;
    fn to_proto(&self) -> route_pb::RetryPolicy {
        route_pb::RetryPolicy {
            retry_on: self.retry_on.clone(),
            num_retries: u32_value(self.num_retries),
            per_try_timeout: duration(self.per_try_timeout),
            retry_back_off: self.retry_back_off.as_ref().map(|b| {
                route_pb::retry_policy::RetryBackOff {
                    base_interval: Some(b.base_interval.to_proto()),
                    max_interval: duration(b.max_interval),
                }
            }),
            ..Default::default()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------------

impl ToProto for model::DownstreamTlsContext {
    type Proto = tls_pb::DownstreamTlsContext;
    fn to_proto(&self) -> tls_pb::DownstreamTlsContext {
        tls_pb::DownstreamTlsContext {
            common_tls_context: Some(self.common_tls_context.to_proto()),
            require_client_certificate: self
                .require_client_certificate
                .map(|value| BoolValue { value }),
            ..Default::default()
        }
    }
}

impl ToProto for model::UpstreamTlsContext {
    type Proto = tls_pb::UpstreamTlsContext;
    fn to_proto(&self) -> tls_pb::UpstreamTlsContext {
        tls_pb::UpstreamTlsContext {
            common_tls_context: Some(self.common_tls_context.to_proto()),
            sni: self.sni.clone().unwrap_or_default(),
            ..Default::default()
        }
    }
}

impl ToProto for model::CommonTlsContext {
    type Proto = tls_pb::CommonTlsContext;
    fn to_proto(&self) -> tls_pb::CommonTlsContext {
        use tls_pb::common_tls_context::{
            CombinedCertificateValidationContext, ValidationContextType,
        };
        // A oneof in the proto: the combined context wins if a caller set both.
        let validation = if let Some(combined) = &self.combined_validation_context {
            Some(ValidationContextType::CombinedValidationContext(
                CombinedCertificateValidationContext {
                    default_validation_context: Some(
                        combined.default_validation_context.to_proto(),
                    ),
                    validation_context_sds_secret_config: Some(
                        combined.validation_context_sds_secret_config.to_proto(),
                    ),
                    ..Default::default()
                },
            ))
        } else {
            self.validation_context
                .as_ref()
                .map(|v| ValidationContextType::ValidationContext(v.to_proto()))
        };
        tls_pb::CommonTlsContext {
            alpn_protocols: self.alpn_protocols.clone(),
            tls_certificate_sds_secret_configs: self
                .tls_certificate_sds_secret_configs
                .iter()
                .map(ToProto::to_proto)
                .collect(),
            validation_context_type: validation,
            ..Default::default()
        }
    }
}

impl ToProto for model::CertificateValidationContext {
    type Proto = tls_pb::CertificateValidationContext;
    fn to_proto(&self) -> tls_pb::CertificateValidationContext {
        tls_pb::CertificateValidationContext {
            trusted_ca: self.trusted_ca.as_ref().map(ToProto::to_proto),
            match_typed_subject_alt_names: self
                .match_typed_subject_alt_names
                .iter()
                .map(ToProto::to_proto)
                .collect(),
            ..Default::default()
        }
    }
}

impl ToProto for model::SubjectAltNameMatcher {
    type Proto = tls_pb::SubjectAltNameMatcher;
    fn to_proto(&self) -> tls_pb::SubjectAltNameMatcher {
        let san_type = match self.san_type {
            model::SanType::Uri => tls_pb::subject_alt_name_matcher::SanType::Uri,
            model::SanType::Dns => tls_pb::subject_alt_name_matcher::SanType::Dns,
        };
        tls_pb::SubjectAltNameMatcher {
            san_type: san_type as i32,
            matcher: Some(self.matcher.to_proto()),
            ..Default::default()
        }
    }
}

impl ToProto for model::SdsSecretConfig {
    type Proto = tls_pb::SdsSecretConfig;
    fn to_proto(&self) -> tls_pb::SdsSecretConfig {
        tls_pb::SdsSecretConfig {
            name: self.name.clone(),
            sds_config: self.sds_config.as_ref().map(ToProto::to_proto),
        }
    }
}

impl ToProto for model::Secret {
    type Proto = tls_pb::Secret;
    fn to_proto(&self) -> tls_pb::Secret {
        let r#type = if let Some(cert) = &self.tls_certificate {
            Some(tls_pb::secret::Type::TlsCertificate(
                tls_pb::TlsCertificate {
                    certificate_chain: Some(cert.certificate_chain.to_proto()),
                    private_key: Some(cert.private_key.to_proto()),
                    ..Default::default()
                },
            ))
        } else {
            self.validation_context
                .as_ref()
                .map(|v| tls_pb::secret::Type::ValidationContext(v.to_proto()))
        };
        tls_pb::Secret {
            name: self.name.clone(),
            r#type,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Clusters and endpoints
// ---------------------------------------------------------------------------------------------

impl ToProto for model::Cluster {
    type Proto = cluster_pb::Cluster;
    fn to_proto(&self) -> cluster_pb::Cluster {
        use cluster_pb::cluster::{ClusterDiscoveryType, DiscoveryType};
        let discovery_type = match self.discovery_type {
            model::DiscoveryType::Static => DiscoveryType::Static,
            model::DiscoveryType::StrictDns => DiscoveryType::StrictDns,
            model::DiscoveryType::Eds => DiscoveryType::Eds,
        };
        cluster_pb::Cluster {
            name: self.name.clone(),
            cluster_discovery_type: Some(ClusterDiscoveryType::Type(discovery_type as i32)),
            eds_cluster_config: self.eds_cluster_config.as_ref().map(|c| {
                cluster_pb::cluster::EdsClusterConfig {
                    eds_config: Some(c.eds_config.to_proto()),
                    service_name: String::new(),
                }
            }),
            connect_timeout: Some(self.connect_timeout.to_proto()),
            load_assignment: self.load_assignment.as_ref().map(ToProto::to_proto),
            circuit_breakers: self.circuit_breakers.as_ref().map(ToProto::to_proto),
            outlier_detection: self.outlier_detection.as_ref().map(ToProto::to_proto),
            typed_extension_protocol_options: self
                .typed_extension_protocol_options
                .iter()
                .map(|(k, v)| (k.clone(), v.to_proto()))
                .collect::<HashMap<_, _>>(),
            transport_socket: self.transport_socket.as_ref().map(ToProto::to_proto),
            ..Default::default()
        }
    }
}

impl ToProto for model::CircuitBreakers {
    type Proto = cluster_pb::CircuitBreakers;
    fn to_proto(&self) -> cluster_pb::CircuitBreakers {
        cluster_pb::CircuitBreakers {
            thresholds: self
                .thresholds
                .iter()
                .map(|t| cluster_pb::circuit_breakers::Thresholds {
                    max_connections: u32_value(t.max_connections),
                    max_pending_requests: u32_value(t.max_pending_requests),
                    max_requests: u32_value(t.max_requests),
                    max_retries: u32_value(t.max_retries),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }
}

impl ToProto for model::OutlierDetection {
    type Proto = cluster_pb::OutlierDetection;
    fn to_proto(&self) -> cluster_pb::OutlierDetection {
        cluster_pb::OutlierDetection {
            consecutive_5xx: u32_value(self.consecutive_5xx),
            interval: duration(self.interval),
            base_ejection_time: duration(self.base_ejection_time),
            max_ejection_percent: u32_value(self.max_ejection_percent),
            enforcing_consecutive_5xx: u32_value(self.enforcing_consecutive_5xx),
            consecutive_gateway_failure: u32_value(self.consecutive_gateway_failure),
            enforcing_consecutive_gateway_failure: u32_value(
                self.enforcing_consecutive_gateway_failure,
            ),
            split_external_local_origin_errors: self.split_external_local_origin_errors,
            consecutive_local_origin_failure: u32_value(self.consecutive_local_origin_failure),
            enforcing_consecutive_local_origin_failure: u32_value(
                self.enforcing_consecutive_local_origin_failure,
            ),
            ..Default::default()
        }
    }
}

impl ToProto for model::UpstreamHttpProtocolOptions {
    type Proto = upstream_http_pb::HttpProtocolOptions;
    fn to_proto(&self) -> upstream_http_pb::HttpProtocolOptions {
        use upstream_http_pb::http_protocol_options::{
            ExplicitHttpConfig, UpstreamProtocolOptions, explicit_http_config::ProtocolConfig,
        };
        let protocol = match &self.explicit_http_config {
            model::ExplicitHttpConfig::HttpProtocolOptions(_) => {
                ProtocolConfig::HttpProtocolOptions(core_pb::Http1ProtocolOptions::default())
            }
            model::ExplicitHttpConfig::Http2ProtocolOptions(_) => {
                ProtocolConfig::Http2ProtocolOptions(core_pb::Http2ProtocolOptions::default())
            }
        };
        upstream_http_pb::HttpProtocolOptions {
            common_http_protocol_options: self
                .common_http_protocol_options
                .as_ref()
                .map(ToProto::to_proto),
            upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
                ExplicitHttpConfig {
                    protocol_config: Some(protocol),
                },
            )),
            ..Default::default()
        }
    }
}

impl ToProto for model::ClusterLoadAssignment {
    type Proto = endpoint_pb::ClusterLoadAssignment;
    fn to_proto(&self) -> endpoint_pb::ClusterLoadAssignment {
        endpoint_pb::ClusterLoadAssignment {
            cluster_name: self.cluster_name.clone(),
            endpoints: self.endpoints.iter().map(ToProto::to_proto).collect(),
            ..Default::default()
        }
    }
}

impl ToProto for model::LocalityLbEndpoints {
    type Proto = endpoint_pb::LocalityLbEndpoints;
    fn to_proto(&self) -> endpoint_pb::LocalityLbEndpoints {
        endpoint_pb::LocalityLbEndpoints {
            locality: self.locality.as_ref().map(|l| core_pb::Locality {
                zone: l.zone.clone(),
                ..Default::default()
            }),
            lb_endpoints: self
                .lb_endpoints
                .iter()
                .map(|e| endpoint_pb::LbEndpoint {
                    host_identifier: Some(endpoint_pb::lb_endpoint::HostIdentifier::Endpoint(
                        endpoint_pb::Endpoint {
                            address: Some(e.endpoint.address.to_proto()),
                            ..Default::default()
                        },
                    )),
                    load_balancing_weight: u32_value(e.load_balancing_weight),
                    ..Default::default()
                })
                .collect(),
            load_balancing_weight: u32_value(self.load_balancing_weight),
            priority: self.priority.unwrap_or_default(),
            ..Default::default()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Resources
// ---------------------------------------------------------------------------------------------

/// One generated resource, ready for the ADS server and for people.
#[derive(Debug, PartialEq)]
pub struct EnvoyResource {
    /// The xDS type URL (`type.googleapis.com/envoy.config.listener.v3.Listener`, ...).
    pub type_url: String,
    /// The resource name xDS keys it by.
    pub name: String,
    /// The model as Envoy JSON (what the golden files and the inspect endpoint show), rendered
    /// on first use: read it as a `serde_json::Value` (`&r.json`, `r.json["field"]`,
    /// `r.json.clone()`).
    pub json: ResourceJson,
    /// The protobuf message packed for the wire, shared (proxies reaching the same service
    /// share their ClusterLoadAssignment; snapshots hold it without copying the bytes).
    pub any: std::sync::Arc<Any>,
    /// A stable content hash: equal resources have equal versions in every process.
    ///
    /// It hashes the canonical JSON of the model rather than `any.value`: prost encodes protobuf
    /// map fields (RBAC policies, `typed_extension_protocol_options`) from a `HashMap`, whose
    /// order changes from process to process, so the encoded bytes of an unchanged resource are
    /// not stable. The JSON is built from `BTreeMap`s and ordered structs and describes the same
    /// message field for field. It is streamed into the hash, never built as a tree.
    pub version: String,
}

impl Clone for EnvoyResource {
    fn clone(&self) -> Self {
        EnvoyResource {
            type_url: self.type_url.clone(),
            name: self.name.clone(),
            json: ResourceJson {
                model: self.json.model.clone(),
                rendered: std::sync::OnceLock::new(),
            },
            any: self.any.clone(),
            version: self.version.clone(),
        }
    }
}

/// A resource's Envoy JSON, rendered from its model the first time it is read and kept.
///
/// A control plane holds the generated resources of every connected proxy but shows their
/// JSON only when someone inspects one (`_config`), so rendering every resource eagerly cost
/// most of the memory per proxy (a `serde_json::Value` tree per endpoint) and most of a
/// build's time. It dereferences to the `Value`, so it reads like one. Deliberately not
/// `Clone`: `json.clone()` then clones the rendered `Value`.
pub struct ResourceJson {
    /// `None` once dropped with [`ResourceJson::forget_model`]: the JSON is then `null`.
    model: Option<std::sync::Arc<model::Resource>>,
    rendered: std::sync::OnceLock<serde_json::Value>,
}

impl ResourceJson {
    fn new(model: std::sync::Arc<model::Resource>) -> Self {
        ResourceJson {
            model: Some(model),
            rendered: std::sync::OnceLock::new(),
        }
    }

    /// The model the JSON is rendered from, unless it was dropped.
    pub fn model(&self) -> Option<&model::Resource> {
        self.model.as_deref()
    }

    /// Drops the model (and any rendered JSON): a control plane keeping thousands of proxies'
    /// resources for the wire does not need to keep what renders them for people too.
    pub fn forget_model(&mut self) {
        self.model = None;
        self.rendered = std::sync::OnceLock::new();
    }
}

impl std::ops::Deref for ResourceJson {
    type Target = serde_json::Value;

    fn deref(&self) -> &serde_json::Value {
        // Serializing the model cannot fail: every map in it has string keys and every leaf is
        // a plain string, number or bool. The fallback only keeps this total.
        self.rendered.get_or_init(|| match &self.model {
            Some(model) => serde_json::to_value(model.as_ref()).unwrap_or(serde_json::Value::Null),
            None => serde_json::Value::Null,
        })
    }
}

impl PartialEq for ResourceJson {
    fn eq(&self, other: &Self) -> bool {
        self.model == other.model
    }
}

impl std::fmt::Debug for ResourceJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl std::fmt::Display for ResourceJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&**self, f)
    }
}

impl EnvoyResource {
    /// A resource known only by its wire form (its JSON renders as `null`): what a control
    /// plane keeps of a proxy's config between builds.
    pub fn from_wire(type_url: &str, name: &str, version: &str, any: std::sync::Arc<Any>) -> Self {
        EnvoyResource {
            type_url: type_url.to_string(),
            name: name.to_string(),
            json: ResourceJson {
                model: None,
                rendered: std::sync::OnceLock::new(),
            },
            any,
            version: version.to_string(),
        }
    }

    /// Converts one model resource into both of its forms.
    pub fn new(resource: &model::Resource) -> Self {
        Self::from_model(resource.clone())
    }

    /// [`EnvoyResource::new`] for a model the caller hands over: it is kept for the JSON view
    /// without a copy (a deep copy of a listener was a tenth of a build).
    pub fn from_model(resource: model::Resource) -> Self {
        let mut hash = Fnv1a::new();
        // Writing into the hash cannot fail, nor can serializing the model (see ResourceJson).
        let _ = serde_json::to_writer(&mut hash, &resource);
        let any = std::sync::Arc::new(match &resource {
            model::Resource::Listener(l) => pack(&l.to_proto()),
            model::Resource::Cluster(c) => pack(&c.to_proto()),
            model::Resource::ClusterLoadAssignment(c) => pack(&c.to_proto()),
            model::Resource::Secret(s) => pack(&s.to_proto()),
        });
        debug_assert_eq!(any.type_url, resource.type_url());
        EnvoyResource {
            type_url: resource.type_url().to_string(),
            name: resource.name().to_string(),
            version: hash.hex(),
            json: ResourceJson::new(std::sync::Arc::new(resource)),
            any,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    fn tls_cluster() -> model::Cluster {
        let mut options = std::collections::BTreeMap::new();
        options.insert(
            names::UPSTREAM_HTTP_PROTOCOL_OPTIONS.to_string(),
            TypedConfig::UpstreamHttpProtocolOptions(UpstreamHttpProtocolOptions {
                common_http_protocol_options: Some(CommonHttpProtocolOptions {
                    idle_timeout: Some(model::Duration::from_hours(1)),
                }),
                explicit_http_config: ExplicitHttpConfig::Http2ProtocolOptions(
                    Http2ProtocolOptions {},
                ),
            }),
        );
        model::Cluster {
            name: "backend".into(),
            discovery_type: DiscoveryType::Eds,
            eds_cluster_config: Some(EdsClusterConfig {
                eds_config: ConfigSource::ads(),
            }),
            connect_timeout: model::Duration::from_millis(5250),
            load_assignment: None,
            circuit_breakers: Some(CircuitBreakers {
                thresholds: vec![Thresholds {
                    max_connections: Some(1024),
                    max_pending_requests: Some(1024),
                    max_requests: Some(1024),
                    max_retries: Some(3),
                }],
            }),
            outlier_detection: Some(OutlierDetection {
                consecutive_5xx: Some(5),
                split_external_local_origin_errors: true,
                ..Default::default()
            }),
            typed_extension_protocol_options: options,
            transport_socket: Some(TransportSocket::upstream_tls(UpstreamTlsContext {
                common_tls_context: CommonTlsContext {
                    tls_certificate_sds_secret_configs: vec![SdsSecretConfig::ads("identity")],
                    combined_validation_context: Some(CombinedValidationContext {
                        default_validation_context: CertificateValidationContext {
                            trusted_ca: None,
                            match_typed_subject_alt_names: vec![SubjectAltNameMatcher {
                                san_type: SanType::Uri,
                                matcher: StringMatcher::Exact("spiffe://m/backend".into()),
                            }],
                        },
                        validation_context_sds_secret_config: SdsSecretConfig::ads("ca"),
                    }),
                    ..Default::default()
                },
                sni: Some("backend{mesh=m}".into()),
            })),
        }
    }

    #[test]
    fn cluster_round_trips_through_protobuf() {
        let resource = EnvoyResource::new(&Resource::Cluster(Box::new(tls_cluster())));
        assert_eq!(resource.type_url, type_urls::CLUSTER);
        let decoded = cluster_pb::Cluster::decode(resource.any.value.as_slice()).expect("decodes");
        assert_eq!(decoded.name, "backend");
        assert_eq!(
            decoded.cluster_discovery_type,
            Some(cluster_pb::cluster::ClusterDiscoveryType::Type(
                cluster_pb::cluster::DiscoveryType::Eds as i32
            ))
        );
        let timeout = decoded.connect_timeout.expect("connect timeout");
        assert_eq!((timeout.seconds, timeout.nanos), (5, 250_000_000));
        let thresholds = &decoded.circuit_breakers.expect("breakers").thresholds[0];
        assert_eq!(thresholds.max_retries, Some(UInt32Value { value: 3 }));
        assert_eq!(
            decoded.outlier_detection.expect("outlier").consecutive_5xx,
            Some(UInt32Value { value: 5 })
        );

        let options =
            &decoded.typed_extension_protocol_options[names::UPSTREAM_HTTP_PROTOCOL_OPTIONS];
        assert_eq!(options.type_url, type_urls::UPSTREAM_HTTP_PROTOCOL_OPTIONS);
        let http = upstream_http_pb::HttpProtocolOptions::decode(options.value.as_slice())
            .expect("decodes options");
        assert!(matches!(
            http.upstream_protocol_options,
            Some(upstream_http_pb::http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(_))
        ));

        let socket = decoded.transport_socket.expect("socket");
        let Some(core_pb::transport_socket::ConfigType::TypedConfig(any)) = socket.config_type
        else {
            panic!("typed config expected");
        };
        assert_eq!(any.type_url, type_urls::UPSTREAM_TLS_CONTEXT);
        let tls = tls_pb::UpstreamTlsContext::decode(any.value.as_slice()).expect("decodes tls");
        assert_eq!(tls.sni, "backend{mesh=m}");
        let common = tls.common_tls_context.expect("common");
        assert_eq!(
            common.tls_certificate_sds_secret_configs[0].name,
            "identity"
        );
    }

    #[test]
    fn listener_round_trips_through_protobuf() {
        let listener = Listener {
            name: "inbound:10.0.0.1:8080".into(),
            address: Address::socket("10.0.0.1", 8080),
            filter_chains: vec![FilterChain {
                name: None,
                filter_chain_match: Some(FilterChainMatch {
                    transport_protocol: Some("tls".into()),
                    ..Default::default()
                }),
                filters: vec![Filter {
                    name: names::TCP_PROXY.into(),
                    typed_config: TypedConfig::TcpProxy(TcpProxy {
                        stat_prefix: "x".into(),
                        cluster: "localhost:8080".into(),
                        idle_timeout: Some(model::Duration::from_hours(2)),
                        max_connect_attempts: None,
                    }),
                }],
                transport_socket: None,
            }],
            listener_filters: vec![ListenerFilter::tls_inspector()],
            traffic_direction: Some(TrafficDirection::Inbound),
        };
        let resource = EnvoyResource::new(&Resource::Listener(listener)); // converts
        let decoded =
            listener_pb::Listener::decode(resource.any.value.as_slice()).expect("decodes");
        assert_eq!(decoded.name, "inbound:10.0.0.1:8080");
        assert_eq!(
            decoded.traffic_direction,
            core_pb::TrafficDirection::Inbound as i32
        );
        assert_eq!(decoded.listener_filters[0].name, names::TLS_INSPECTOR);
        let chain = &decoded.filter_chains[0];
        assert_eq!(
            chain
                .filter_chain_match
                .as_ref()
                .expect("match")
                .transport_protocol,
            "tls"
        );
        let Some(listener_pb::filter::ConfigType::TypedConfig(any)) = &chain.filters[0].config_type
        else {
            panic!("typed config expected");
        };
        let tcp = tcp_proxy_pb::TcpProxy::decode(any.value.as_slice()).expect("decodes tcp");
        assert_eq!(
            tcp.cluster_specifier,
            Some(tcp_proxy_pb::tcp_proxy::ClusterSpecifier::Cluster(
                "localhost:8080".into()
            ))
        );
        assert_eq!(tcp.idle_timeout.map(|d| d.seconds), Some(7200));
    }

    #[test]
    fn version_ignores_protobuf_map_order() {
        let a = EnvoyResource::new(&Resource::Cluster(Box::new(tls_cluster())));
        let b = EnvoyResource::new(&Resource::Cluster(Box::new(tls_cluster())));
        assert_eq!(a.version, b.version);
        let mut other = tls_cluster();
        other.connect_timeout = model::Duration::from_secs(1);
        let c = EnvoyResource::new(&Resource::Cluster(Box::new(other)));
        assert_ne!(a.version, c.version);
    }
}
