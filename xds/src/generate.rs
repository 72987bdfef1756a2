//! The pure, deterministic generation of a sidecar's Envoy resources from its `ProxyContext`.
//!
//! Per inbound: a listener `inbound:<address>:<port>` (mTLS STRICT, PERMISSIVE or plaintext),
//! RBAC from the MeshTrafficPermission rules, and a STATIC cluster `localhost:<servicePort>` to
//! the application. Per outbound: a listener `outbound:<address>:<port>`, an EDS cluster named
//! after the service (mTLS with the SNI described at [`outbound_sni`]) and its
//! ClusterLoadAssignment. Kuma's default MeshTimeout, MeshRetry and MeshCircuitBreaker values
//! (see [`defaults`]) are built in. Secrets come from [`secrets`], filled in by the server.
//!
//! Names depend only on stable inputs (service names, ports, addresses), so a route never names
//! a cluster under a name that changes between generations.

use std::collections::BTreeMap;
use std::net::IpAddr;

use atoll_core::labels::SERVICE_TAG;

use crate::context::{
    InboundContext, MtlsMode, OutboundContext, PermissionAction, PermissionRule, Protocol,
    ProxyContext, SourceMatch,
};
use crate::model::{
    self, Address, Authenticated, CertificateValidationContext, CircuitBreakers, Cluster,
    ClusterLoadAssignment, CodecType, CombinedValidationContext, CommonHttpProtocolOptions,
    CommonTlsContext, ConfigSource, DataSource, DiscoveryType, DownstreamTlsContext,
    EdsClusterConfig, ExplicitHttpConfig, Filter, FilterChain, FilterChainMatch,
    Http1ProtocolOptions, Http2ProtocolOptions, HttpConnectionManager, HttpFilter, HttpRbac,
    LbEndpoint, Listener, ListenerFilter, Locality, LocalityLbEndpoints, NetworkRbac, Permission,
    Policy, Principal, PrincipalSet, Rbac, RbacAction, Resource, RetryBackOff, RetryPolicy, Route,
    RouteAction, RouteConfiguration, RouteMatch, SanType, SdsSecretConfig, Secret, StringMatcher,
    SubjectAltNameMatcher, TcpProxy, Thresholds, TlsCertificate, TrafficDirection, TransportSocket,
    TypedConfig, UpstreamHttpProtocolOptions, UpstreamTlsContext, VirtualHost, names,
};
use crate::proto::EnvoyResource;
use atoll_core::policies::{OutboundProtocol, OutboundResources};

/// The SDS secret holding this proxy's certificate chain and private key.
pub const IDENTITY_SECRET: &str = "identity_cert";
/// The SDS secret holding the mesh CA that peers' certificates are validated against.
pub const MESH_CA_SECRET: &str = "mesh_ca";

/// Kuma's built-in defaults for a new mesh, applied until Atoll resolves real policies.
///
/// Kuma creates these policies with every new mesh (`pkg/defaults/mesh` in Kuma, and the
/// "Mesh > Default policies" page of its docs; the durations come from
/// `pkg/plugins/policies/core/defaults`). `DEFAULTS.md` beside this crate lists them.
pub mod defaults {
    use crate::model::Duration;

    // MeshTimeout `mesh-timeout-to-all-<mesh>` (to: Mesh), the outbound side.
    /// Outbound `connectionTimeout` (cluster `connect_timeout`).
    pub const OUTBOUND_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// Outbound `idleTimeout` (TCP proxy idle timeout, HTTP connection idle timeout).
    pub const OUTBOUND_IDLE_TIMEOUT: Duration = Duration::from_hours(1);
    /// Outbound `http.requestTimeout` (route `timeout`).
    pub const OUTBOUND_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
    /// Outbound `http.streamIdleTimeout` (HCM `stream_idle_timeout`).
    pub const OUTBOUND_STREAM_IDLE_TIMEOUT: Duration = Duration::from_mins(30);

    // MeshTimeout `mesh-timeout-all-<mesh>` (rules/from: Mesh), the inbound side: twice the
    // outbound values, no request timeout.
    /// Inbound `connectionTimeout` (the local application cluster's `connect_timeout`).
    pub const INBOUND_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// Inbound `idleTimeout`.
    pub const INBOUND_IDLE_TIMEOUT: Duration = Duration::from_hours(2);
    /// Inbound `http.requestTimeout`: `0s` turns Envoy's route timeout off.
    pub const INBOUND_REQUEST_TIMEOUT: Duration = Duration::ZERO;
    /// Inbound `http.streamIdleTimeout`.
    pub const INBOUND_STREAM_IDLE_TIMEOUT: Duration = Duration::from_hours(1);

    // MeshRetry `mesh-retry-all-<mesh>` (to: Mesh).
    /// `tcp.maxConnectAttempt` (TCP proxy `max_connect_attempts`).
    pub const TCP_MAX_CONNECT_ATTEMPTS: u32 = 5;
    /// `http.numRetries` and `grpc.numRetries`.
    pub const NUM_RETRIES: u32 = 5;
    /// `http.perTryTimeout` and `grpc.perTryTimeout`.
    pub const PER_TRY_TIMEOUT: Duration = Duration::from_secs(16);
    /// `backOff.baseInterval`.
    pub const RETRY_BASE_INTERVAL: Duration = Duration::from_millis(25);
    /// `backOff.maxInterval`.
    pub const RETRY_MAX_INTERVAL: Duration = Duration::from_millis(250);
    /// Kuma's `retry_on` for HTTP when the policy lists no `retryOn`.
    pub const HTTP_RETRY_ON: &str = "gateway-error,connect-failure,refused-stream";
    /// Kuma's `retry_on` for gRPC when the policy lists no `retryOn`.
    pub const GRPC_RETRY_ON: &str = "cancelled,connect-failure,gateway-error,refused-stream,reset,resource-exhausted,unavailable";

    // MeshCircuitBreaker `mesh-circuit-breaker-all-<mesh>` (to: Mesh), `connectionLimits`.
    // Kuma's default sets no outlier detection.
    pub const MAX_CONNECTIONS: u32 = 1024;
    pub const MAX_PENDING_REQUESTS: u32 = 1024;
    pub const MAX_REQUESTS: u32 = 1024;
    pub const MAX_RETRIES: u32 = 3;
}

/// Why a context could not be turned into Envoy configuration. Field paths use the context's
/// YAML names (`inbounds[0].serviceAddress`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenerateError {
    #[error("{field}: {value:?} is not an IP address")]
    InvalidAddress { field: String, value: String },
    #[error("{field}: must not be 0")]
    ZeroPort { field: String },
    #[error("{field}: must not be empty")]
    Empty { field: String },
    #[error("{field}: must be at least 1")]
    ZeroWeight { field: String },
    #[error("two different {type_url} resources are named {name:?}")]
    Conflict { type_url: String, name: String },
}

/// Generates every Envoy resource (listeners, clusters, endpoints) of one sidecar, sorted by
/// type URL then name. The same context always gives the same output; the order of inbounds,
/// outbounds and endpoints in the context does not matter (the order of permission rules does:
/// the first matching rule decides).
pub fn generate(ctx: &ProxyContext) -> Result<Vec<EnvoyResource>, GenerateError> {
    generate_with(ctx, None)
}

/// [`generate`], taking each outbound's ClusterLoadAssignment from `assignments` when another
/// proxy already generated it for the same cluster and endpoints (the output is identical).
pub fn generate_with(
    ctx: &ProxyContext,
    assignments: Option<&AssignmentCache>,
) -> Result<Vec<EnvoyResource>, GenerateError> {
    validate(ctx)?;
    let mut resources = Vec::new();
    for inbound in &ctx.inbounds {
        resources.extend(inbound_resources(ctx, inbound));
    }
    let mut generated_resources = Vec::new();
    for outbound in &ctx.outbounds {
        resources.extend(outbound_resources(ctx, outbound));
        let cluster = outbound_cluster_name(outbound);
        let make = || {
            EnvoyResource::from_model(Resource::ClusterLoadAssignment(load_assignment(
                &cluster,
                &outbound.endpoints,
            )))
        };
        generated_resources.push(match assignments {
            Some(cache) => cache.get_or_make(&cluster, &outbound.endpoints, make),
            None => make(),
        });
    }

    // Two inbounds may share the application port, two outbounds the service: identical
    // resources collapse into one, different ones under one name are an error.
    let mut by_key: BTreeMap<(&'static str, String), EnvoyResource> = BTreeMap::new();
    let generated = resources
        .into_iter()
        .map(|r| (r.type_url(), EnvoyResource::from_model(r)))
        .chain(
            generated_resources
                .into_iter()
                .map(|r| (crate::model::type_urls::CLUSTER_LOAD_ASSIGNMENT, r)),
        );
    for (type_url, generated) in generated {
        let key = (type_url, generated.name.clone());
        match by_key.get(&key) {
            // Versions are content hashes: equal resources have equal versions.
            Some(existing) if existing.version != generated.version => {
                return Err(GenerateError::Conflict {
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

/// The SDS secrets: this proxy's identity (certificate chain and key) under
/// [`IDENTITY_SECRET`] and the mesh CA under [`MESH_CA_SECRET`], sorted by name.
pub fn secrets(
    identity_chain_pem: &str,
    identity_key_pem: &str,
    ca_pem: &str,
) -> Vec<EnvoyResource> {
    let ca = Secret {
        name: MESH_CA_SECRET.to_string(),
        tls_certificate: None,
        validation_context: Some(CertificateValidationContext {
            trusted_ca: Some(DataSource::InlineString(ca_pem.to_string())),
            match_typed_subject_alt_names: Vec::new(),
        }),
    };
    let identity = Secret {
        name: IDENTITY_SECRET.to_string(),
        tls_certificate: Some(TlsCertificate {
            certificate_chain: DataSource::InlineString(identity_chain_pem.to_string()),
            private_key: DataSource::InlineString(identity_key_pem.to_string()),
        }),
        validation_context: None,
    };
    let mut out = vec![
        EnvoyResource::from_model(Resource::Secret(identity)),
        EnvoyResource::from_model(Resource::Secret(ca)),
    ];
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The SNI a sidecar sends to reach `service` in `mesh`: `<service>{mesh=<mesh>}`, the format
/// Kuma uses. A zone ingress routes on it without decrypting: the part before `{` names the
/// service, `mesh=` the mesh. Service names never contain `{`.
pub fn outbound_sni(service: &str, mesh: &str) -> String {
    format!("{service}{{mesh={mesh}}}")
}

/// The SPIFFE ID of a service in a mesh.
pub fn spiffe_id(mesh: &str, service: &str) -> String {
    format!("spiffe://{mesh}/{service}")
}

/// The URI SAN a mesh certificate carries for one tag.
pub fn tag_uri(key: &str, value: &str) -> String {
    format!("kuma://{key}/{value}")
}

/// The name of the STATIC cluster for the application behind an inbound.
pub fn local_cluster_name(service_port: u16) -> String {
    format!("localhost:{service_port}")
}

pub fn inbound_listener_name(address: &str, port: u16) -> String {
    format!("inbound:{address}:{port}")
}

pub fn outbound_listener_name(address: &str, port: u16) -> String {
    format!("outbound:{address}:{port}")
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

fn validate(ctx: &ProxyContext) -> Result<(), GenerateError> {
    // Field paths are formatted only for an error: a proxy has hundreds of endpoints.
    non_empty(|| "mesh".into(), &ctx.mesh)?;
    non_empty(|| "name".into(), &ctx.name)?;
    ip(|| "address".into(), &ctx.address)?;
    for (i, inbound) in ctx.inbounds.iter().enumerate() {
        let at = |f: &'static str| move || format!("inbounds[{i}].{f}");
        port(at("port"), inbound.port)?;
        port(at("servicePort"), inbound.service_port)?;
        ip(at("serviceAddress"), &inbound.service_address)?;
        non_empty(at("service"), &inbound.service)?;
    }
    for (i, outbound) in ctx.outbounds.iter().enumerate() {
        let at = |f: &'static str| move || format!("outbounds[{i}].{f}");
        ip(at("address"), &outbound.address)?;
        port(at("port"), outbound.port)?;
        non_empty(at("service"), &outbound.service)?;
        for (j, endpoint) in outbound.endpoints.iter().enumerate() {
            let at = |f: &'static str| move || format!("outbounds[{i}].endpoints[{j}].{f}");
            ip(at("address"), &endpoint.address)?;
            port(at("port"), endpoint.port)?;
            if endpoint.weight == 0 {
                return Err(GenerateError::ZeroWeight {
                    field: at("weight")(),
                });
            }
        }
    }
    Ok(())
}

fn non_empty(field: impl FnOnce() -> String, value: &str) -> Result<(), GenerateError> {
    if value.is_empty() {
        return Err(GenerateError::Empty { field: field() });
    }
    Ok(())
}

fn ip(field: impl FnOnce() -> String, value: &str) -> Result<(), GenerateError> {
    value
        .parse::<IpAddr>()
        .map(|_| ())
        .map_err(|_| GenerateError::InvalidAddress {
            field: field(),
            value: value.to_string(),
        })
}

fn port(field: impl FnOnce() -> String, value: u16) -> Result<(), GenerateError> {
    if value == 0 {
        return Err(GenerateError::ZeroPort { field: field() });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Inbound
// ---------------------------------------------------------------------------------------------

/// What a filter chain knows about the peer.
#[derive(Clone, Copy)]
enum Peer<'a> {
    /// The peer presented a certificate issued by the mesh CA (validated by the TLS context).
    Mtls { mesh: &'a str },
    /// Plaintext: no identity (mTLS off, or the plaintext chain of PERMISSIVE).
    Plaintext,
}

fn inbound_resources(ctx: &ProxyContext, inbound: &InboundContext) -> Vec<Resource> {
    let name = inbound_listener_name(&ctx.address, inbound.port);
    let stat_prefix = stat_name(&name);
    let local_cluster = local_cluster_name(inbound.service_port);
    let mesh_peer = Peer::Mtls { mesh: &ctx.mesh };

    let chain = |peer: Peer<'_>| FilterChain {
        name: None,
        filter_chain_match: None,
        filters: inbound_filters(inbound, &stat_prefix, &local_cluster, peer),
        transport_socket: None,
    };
    let (listener_filters, filter_chains) = match ctx.mtls.as_ref().map(|m| m.mode) {
        None => (Vec::new(), vec![chain(Peer::Plaintext)]),
        Some(MtlsMode::Strict) => (
            Vec::new(),
            vec![FilterChain {
                transport_socket: Some(inbound_tls(&ctx.mesh)),
                ..chain(mesh_peer)
            }],
        ),
        // The TLS inspector tells TLS from plaintext; each gets its own chain.
        Some(MtlsMode::Permissive) => (
            vec![ListenerFilter::tls_inspector()],
            vec![
                FilterChain {
                    name: Some(format!("{name}:mtls")),
                    filter_chain_match: Some(FilterChainMatch {
                        transport_protocol: Some("tls".to_string()),
                        ..Default::default()
                    }),
                    transport_socket: Some(inbound_tls(&ctx.mesh)),
                    ..chain(mesh_peer)
                },
                FilterChain {
                    name: Some(format!("{name}:plaintext")),
                    filter_chain_match: Some(FilterChainMatch {
                        transport_protocol: Some("raw_buffer".to_string()),
                        ..Default::default()
                    }),
                    ..chain(Peer::Plaintext)
                },
            ],
        ),
    };

    let listener = Listener {
        name: name.clone(),
        address: Address::socket(&ctx.address, inbound.port),
        filter_chains,
        listener_filters,
        traffic_direction: Some(TrafficDirection::Inbound),
    };
    let cluster = Cluster {
        name: local_cluster.clone(),
        discovery_type: DiscoveryType::Static,
        eds_cluster_config: None,
        connect_timeout: defaults::INBOUND_CONNECT_TIMEOUT,
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: local_cluster,
            endpoints: vec![LocalityLbEndpoints {
                locality: None,
                lb_endpoints: vec![LbEndpoint {
                    endpoint: model::Endpoint {
                        address: Address::socket(&inbound.service_address, inbound.service_port),
                    },
                    load_balancing_weight: None,
                }],
                load_balancing_weight: None,
                priority: None,
            }],
        }),
        circuit_breakers: None,
        outlier_detection: None,
        typed_extension_protocol_options: http_protocol_options(
            inbound.protocol,
            defaults::INBOUND_IDLE_TIMEOUT,
        ),
        transport_socket: None,
    };
    vec![
        Resource::Listener(listener),
        Resource::Cluster(Box::new(cluster)),
    ]
}

fn inbound_filters(
    inbound: &InboundContext,
    stat_prefix: &str,
    local_cluster: &str,
    peer: Peer<'_>,
) -> Vec<Filter> {
    let rules = &inbound.permissions.rules;
    let enforced = allow_rbac(rules, peer, false);
    let shadow = rules
        .iter()
        .any(|r| r.action == PermissionAction::AllowWithShadowDeny)
        .then(|| allow_rbac(rules, peer, true));

    match inbound.protocol {
        Protocol::Tcp => vec![
            Filter {
                name: names::NETWORK_RBAC.to_string(),
                typed_config: TypedConfig::NetworkRbac(NetworkRbac {
                    stat_prefix: format!("{stat_prefix}."),
                    rules: Some(enforced),
                    shadow_rules: shadow,
                    shadow_rules_stat_prefix: None,
                }),
            },
            Filter {
                name: names::TCP_PROXY.to_string(),
                typed_config: TypedConfig::TcpProxy(TcpProxy {
                    stat_prefix: stat_prefix.to_string(),
                    cluster: local_cluster.to_string(),
                    idle_timeout: Some(defaults::INBOUND_IDLE_TIMEOUT),
                    max_connect_attempts: None,
                }),
            },
        ],
        Protocol::Http | Protocol::Http2 | Protocol::Grpc => {
            let rbac = HttpFilter {
                name: names::HTTP_RBAC.to_string(),
                typed_config: TypedConfig::HttpRbac(HttpRbac {
                    rules: Some(enforced),
                    shadow_rules: shadow,
                    shadow_rules_stat_prefix: None,
                }),
            };
            let route = RouteAction {
                cluster: local_cluster.to_string(),
                timeout: Some(defaults::INBOUND_REQUEST_TIMEOUT),
                idle_timeout: None,
                retry_policy: None,
                auto_host_rewrite: None,
            };
            vec![http_connection_manager(
                stat_prefix,
                &format!("inbound:{}", inbound.service),
                &inbound.service,
                route,
                vec![rbac, HttpFilter::router()],
                defaults::INBOUND_IDLE_TIMEOUT,
                defaults::INBOUND_STREAM_IDLE_TIMEOUT,
            )]
        }
    }
}

/// The TLS context of an inbound mTLS chain: present this proxy's identity, require a client
/// certificate signed by the mesh CA whose URI SAN is a SPIFFE ID of this mesh.
fn inbound_tls(mesh: &str) -> TransportSocket {
    TransportSocket::downstream_tls(DownstreamTlsContext {
        common_tls_context: CommonTlsContext {
            tls_certificate_sds_secret_configs: vec![SdsSecretConfig::ads(IDENTITY_SECRET)],
            combined_validation_context: Some(mesh_validation(StringMatcher::Prefix(format!(
                "spiffe://{mesh}/"
            )))),
            ..Default::default()
        },
        require_client_certificate: Some(true),
    })
}

pub fn mesh_validation(san: StringMatcher) -> CombinedValidationContext {
    CombinedValidationContext {
        default_validation_context: CertificateValidationContext {
            trusted_ca: None,
            match_typed_subject_alt_names: vec![SubjectAltNameMatcher {
                san_type: SanType::Uri,
                matcher: san,
            }],
        },
        validation_context_sds_secret_config: SdsSecretConfig::ads(MESH_CA_SECRET),
    }
}

// ---------------------------------------------------------------------------------------------
// RBAC
// ---------------------------------------------------------------------------------------------

/// The enforced RBAC of one inbound filter chain, from the ordered permission rules.
///
/// The rules mean "the first rule whose source matches the client decides; no match denies".
/// Envoy's RBAC has no order: an ALLOW config admits a client when *any* policy matches, a DENY
/// config rejects it when any policy matches. Chaining a DENY filter (all deny rules) and an
/// ALLOW filter (all allow rules) is only right when every deny rule comes before every allow
/// rule: a client matched by "allow web" (rule 1) and by "deny everyone" (rule 2) must be let
/// in, but that chain would reject it. So this builds one ALLOW config with one policy per
/// allow rule `i`, whose principal is "matches rule i AND NOT (matches any deny rule before
/// i)". A client is then admitted exactly when some allow rule matches and no earlier deny rule
/// does, i.e. when the first matching rule is an allow rule. Deny rules after the last allow
/// rule change nothing (no match denies anyway) and vanish. No rules give an ALLOW config
/// without policies, which denies everyone, Kuma's behaviour when no MeshTrafficPermission
/// matches. Policy names (`rule-000`, ...) keep the rule index for stats and debugging.
///
/// With `shadow_deny_is_deny`, AllowWithShadowDeny rules count as deny rules: that is the
/// shadow config, which Envoy evaluates without enforcing and counts in its `shadow_denied`
/// stats, so the clients the rule would deny show up there while still being allowed.
fn allow_rbac(rules: &[PermissionRule], peer: Peer<'_>, shadow_deny_is_deny: bool) -> Rbac {
    let mut policies = BTreeMap::new();
    let mut earlier_denies: Vec<Principal> = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        // A source that cannot match on this chain (tags without a certificate) neither allows
        // nor shadows anything here.
        let Some(source) = source_principal(&rule.source, peer) else {
            continue;
        };
        let denies = match rule.action {
            PermissionAction::Allow => false,
            PermissionAction::Deny => true,
            PermissionAction::AllowWithShadowDeny => shadow_deny_is_deny,
        };
        if denies {
            earlier_denies.push(source);
            continue;
        }
        let principal = match earlier_denies.as_slice() {
            [] => source,
            denies => Principal::AndIds(PrincipalSet {
                ids: vec![source, Principal::NotId(Box::new(any_of(denies.to_vec())))],
            }),
        };
        policies.insert(
            format!("rule-{i:03}"),
            Policy {
                permissions: vec![Permission::Any(true)],
                principals: vec![principal],
            },
        );
    }
    Rbac {
        action: RbacAction::Allow,
        policies,
    }
}

fn any_of(mut ids: Vec<Principal>) -> Principal {
    if ids.len() == 1 {
        return ids.remove(0);
    }
    Principal::OrIds(PrincipalSet { ids })
}

fn all_of(mut ids: Vec<Principal>) -> Principal {
    if ids.len() == 1 {
        return ids.remove(0);
    }
    Principal::AndIds(PrincipalSet { ids })
}

fn uri_principal(matcher: StringMatcher) -> Principal {
    Principal::Authenticated(Authenticated {
        principal_name: matcher,
    })
}

/// Which peers a rule's source matches on a chain; `None` when it can match none there.
///
/// - `Any` on an mTLS chain: any client with a SPIFFE ID of this mesh; on a plaintext chain
///   (mTLS off, or PERMISSIVE's plaintext chain): everyone, since no one can be identified.
/// - `Tags`: the client certificate must carry every tag, each as a URI SAN (Envoy's
///   `authenticated` principal matches any of the certificate's URI SANs):
///   `kuma.io/service` as the SPIFFE ID, every other tag as `kuma://<key>/<value>`. Without a
///   `kuma.io/service` tag the mesh's SPIFFE prefix is required too, so the rule stays inside
///   the mesh. On a plaintext chain tags can never match. An empty tag set is the same as `Any`.
fn source_principal(source: &SourceMatch, peer: Peer<'_>) -> Option<Principal> {
    let tags = match source {
        SourceMatch::Any => None,
        SourceMatch::Tags(tags) if tags.is_empty() => None,
        SourceMatch::Tags(tags) => Some(tags),
    };
    match (peer, tags) {
        (Peer::Plaintext, None) => Some(Principal::Any(true)),
        (Peer::Plaintext, Some(_)) => None,
        (Peer::Mtls { mesh }, None) => Some(uri_principal(StringMatcher::Prefix(format!(
            "spiffe://{mesh}/"
        )))),
        (Peer::Mtls { mesh }, Some(tags)) => {
            let mut ids = Vec::new();
            if !tags.contains_key(SERVICE_TAG) {
                ids.push(uri_principal(StringMatcher::Prefix(format!(
                    "spiffe://{mesh}/"
                ))));
            }
            for (key, value) in tags {
                let uri = if key == SERVICE_TAG {
                    spiffe_id(mesh, value)
                } else {
                    tag_uri(key, value)
                };
                ids.push(uri_principal(StringMatcher::Exact(uri)));
            }
            Some(all_of(ids))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Outbound
// ---------------------------------------------------------------------------------------------

fn outbound_resources(ctx: &ProxyContext, outbound: &OutboundContext) -> Vec<Resource> {
    let name = outbound_listener_name(&outbound.address, outbound.port);
    let stat_prefix = stat_name(&name);
    let cluster_name = outbound_cluster_name(outbound);
    let (sni, upstream_identity) = if outbound.external {
        (
            crate::zone_proxy::external_sni(&outbound.service, &ctx.mesh),
            crate::zone_proxy::egress_spiffe_id(&ctx.mesh),
        )
    } else {
        (
            outbound_sni(&outbound.service, &ctx.mesh),
            spiffe_id(&ctx.mesh, &outbound.service),
        )
    };

    let filters = match outbound.protocol {
        Protocol::Tcp => vec![Filter {
            name: names::TCP_PROXY.to_string(),
            typed_config: TypedConfig::TcpProxy(TcpProxy {
                stat_prefix: stat_prefix.clone(),
                cluster: cluster_name.clone(),
                idle_timeout: Some(defaults::OUTBOUND_IDLE_TIMEOUT),
                max_connect_attempts: Some(defaults::TCP_MAX_CONNECT_ATTEMPTS),
            }),
        }],
        Protocol::Http | Protocol::Http2 | Protocol::Grpc => {
            let retry_on = if outbound.protocol == Protocol::Grpc {
                defaults::GRPC_RETRY_ON
            } else {
                defaults::HTTP_RETRY_ON
            };
            let route = RouteAction {
                cluster: cluster_name.clone(),
                timeout: Some(defaults::OUTBOUND_REQUEST_TIMEOUT),
                idle_timeout: None,
                retry_policy: Some(RetryPolicy {
                    retry_on: retry_on.to_string(),
                    num_retries: Some(defaults::NUM_RETRIES),
                    per_try_timeout: Some(defaults::PER_TRY_TIMEOUT),
                    retry_back_off: Some(RetryBackOff {
                        base_interval: defaults::RETRY_BASE_INTERVAL,
                        max_interval: Some(defaults::RETRY_MAX_INTERVAL),
                    }),
                }),
                auto_host_rewrite: None,
            };
            vec![http_connection_manager(
                &stat_prefix,
                &format!("outbound:{}", outbound.service),
                &outbound.service,
                route,
                vec![HttpFilter::router()],
                defaults::OUTBOUND_IDLE_TIMEOUT,
                defaults::OUTBOUND_STREAM_IDLE_TIMEOUT,
            )]
        }
    };

    let mut listener = Listener {
        name,
        address: Address::socket(&outbound.address, outbound.port),
        filter_chains: vec![FilterChain {
            name: None,
            filter_chain_match: None,
            filters,
            transport_socket: None,
        }],
        listener_filters: Vec::new(),
        traffic_direction: Some(TrafficDirection::Outbound),
    };

    let transport_socket = ctx.mtls.as_ref().map(|_| {
        TransportSocket::upstream_tls(UpstreamTlsContext {
            common_tls_context: CommonTlsContext {
                tls_certificate_sds_secret_configs: vec![SdsSecretConfig::ads(IDENTITY_SECRET)],
                combined_validation_context: Some(mesh_validation(StringMatcher::Exact(
                    upstream_identity,
                ))),
                ..Default::default()
            },
            sni: Some(sni),
        })
    });
    let mut cluster = Cluster {
        name: cluster_name.clone(),
        discovery_type: DiscoveryType::Eds,
        eds_cluster_config: Some(EdsClusterConfig {
            eds_config: ConfigSource::ads(),
        }),
        connect_timeout: defaults::OUTBOUND_CONNECT_TIMEOUT,
        load_assignment: None,
        circuit_breakers: Some(CircuitBreakers {
            thresholds: vec![Thresholds {
                max_connections: Some(defaults::MAX_CONNECTIONS),
                max_pending_requests: Some(defaults::MAX_PENDING_REQUESTS),
                max_requests: Some(defaults::MAX_REQUESTS),
                max_retries: Some(defaults::MAX_RETRIES),
            }],
        }),
        outlier_detection: None,
        typed_extension_protocol_options: http_protocol_options(
            outbound.protocol,
            defaults::OUTBOUND_IDLE_TIMEOUT,
        ),
        transport_socket,
    };
    // Kuma's default policies are built in above; the resolved policies change them.
    outbound.policies.configure(&mut OutboundResources {
        protocol: match outbound.protocol {
            Protocol::Tcp => OutboundProtocol::Tcp,
            Protocol::Http | Protocol::Http2 => OutboundProtocol::Http,
            Protocol::Grpc => OutboundProtocol::Grpc,
        },
        listener: &mut listener,
        cluster: &mut cluster,
    });
    // The ClusterLoadAssignment is made by `generate_with` (it may come from the cache).
    vec![
        Resource::Listener(listener),
        Resource::Cluster(Box::new(cluster)),
    ]
}

/// The cluster (and ClusterLoadAssignment) name of an outbound.
fn outbound_cluster_name(outbound: &OutboundContext) -> String {
    if outbound.external {
        format!("external:{}", outbound.service)
    } else {
        outbound.service.clone()
    }
}

/// ClusterLoadAssignments shared between the proxies of a mesh: proxies that reach the same
/// service get the same assignment, so it is generated and encoded once per (cluster,
/// endpoints) instead of once per proxy. An entry is replaced when its endpoints change.
#[derive(Debug, Default)]
pub struct AssignmentCache {
    entries: std::sync::Mutex<
        std::collections::HashMap<String, (Vec<crate::context::Endpoint>, EnvoyResource)>,
    >,
}

impl AssignmentCache {
    /// The assignment of `cluster` with `endpoints`, made by `make` unless cached.
    pub fn get_or_make(
        &self,
        cluster: &str,
        endpoints: &[crate::context::Endpoint],
        make: impl FnOnce() -> EnvoyResource,
    ) -> EnvoyResource {
        if let Ok(entries) = self.entries.lock()
            && let Some((cached_endpoints, resource)) = entries.get(cluster)
            && cached_endpoints.as_slice() == endpoints
        {
            return resource.clone();
        }
        let made = make();
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(cluster.to_string(), (endpoints.to_vec(), made.clone()));
        }
        made
    }
}

/// The endpoints of a service grouped by zone. Local endpoints (no zone) come first at
/// priority 0, with no locality; each remote zone is a locality `{zone}` at priority 1, so
/// Envoy prefers local endpoints and spills over to other zones only when the local ones are
/// unhealthy. When there are no local endpoints the remote zones take priority 0 (Envoy wants
/// priorities without gaps). Each endpoint keeps its weight (instance count for a zone
/// ingress). Sorted, so the input order does not matter.
pub fn load_assignment(
    cluster_name: &str,
    endpoints: &[crate::context::Endpoint],
) -> ClusterLoadAssignment {
    let mut by_zone: BTreeMap<Option<&str>, Vec<&crate::context::Endpoint>> = BTreeMap::new();
    for endpoint in endpoints {
        by_zone
            .entry(endpoint.zone.as_deref())
            .or_default()
            .push(endpoint);
    }
    let remote_priority = u32::from(by_zone.contains_key(&None));
    let endpoints = by_zone
        .into_iter()
        .map(|(zone, mut members)| {
            members.sort();
            LocalityLbEndpoints {
                locality: zone.map(|zone| Locality {
                    zone: zone.to_string(),
                }),
                lb_endpoints: members
                    .into_iter()
                    .map(|e| LbEndpoint {
                        endpoint: model::Endpoint {
                            address: Address::socket(&e.address, e.port),
                        },
                        load_balancing_weight: Some(e.weight),
                    })
                    .collect(),
                load_balancing_weight: None,
                priority: zone.map(|_| remote_priority).filter(|p| *p > 0),
            }
        })
        .collect();
    ClusterLoadAssignment {
        cluster_name: cluster_name.to_string(),
        endpoints,
    }
}

// ---------------------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------------------

pub fn http_connection_manager(
    stat_prefix: &str,
    route_config_name: &str,
    service: &str,
    route: RouteAction,
    http_filters: Vec<HttpFilter>,
    idle_timeout: model::Duration,
    stream_idle_timeout: model::Duration,
) -> Filter {
    Filter {
        name: names::HTTP_CONNECTION_MANAGER.to_string(),
        typed_config: TypedConfig::HttpConnectionManager(Box::new(HttpConnectionManager {
            stat_prefix: stat_prefix.to_string(),
            codec_type: CodecType::Auto,
            route_config: RouteConfiguration {
                name: route_config_name.to_string(),
                virtual_hosts: vec![VirtualHost {
                    name: service.to_string(),
                    domains: vec!["*".to_string()],
                    routes: vec![Route {
                        name: None,
                        route_match: RouteMatch {
                            prefix: "/".to_string(),
                        },
                        route,
                    }],
                }],
            },
            http_filters,
            common_http_protocol_options: Some(CommonHttpProtocolOptions {
                idle_timeout: Some(idle_timeout),
            }),
            stream_idle_timeout: Some(stream_idle_timeout),
        })),
    }
}

/// The upstream HTTP options of a cluster: HTTP/2 for http2 and gRPC, HTTP/1.1 for http, with
/// the connection idle timeout; nothing for TCP.
pub fn http_protocol_options(
    protocol: Protocol,
    idle_timeout: model::Duration,
) -> BTreeMap<String, TypedConfig> {
    let explicit = match protocol {
        Protocol::Tcp => return BTreeMap::new(),
        Protocol::Http => ExplicitHttpConfig::HttpProtocolOptions(Http1ProtocolOptions {}),
        Protocol::Http2 | Protocol::Grpc => {
            ExplicitHttpConfig::Http2ProtocolOptions(Http2ProtocolOptions {})
        }
    };
    let options = UpstreamHttpProtocolOptions {
        common_http_protocol_options: Some(CommonHttpProtocolOptions {
            idle_timeout: Some(idle_timeout),
        }),
        explicit_http_config: explicit,
    };
    BTreeMap::from([(
        names::UPSTREAM_HTTP_PROTOCOL_OPTIONS.to_string(),
        TypedConfig::UpstreamHttpProtocolOptions(options),
    )])
}

/// A stats-friendly form of a name: every character other than ASCII letters, digits and `_`
/// becomes `_` (`inbound:10.0.0.1:8080` -> `inbound_10_0_0_1_8080`).
pub fn stat_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{Endpoint, InboundPermissions, MeshMtls};
    use atoll_core::policies::mesh_timeout::TimeoutConf;

    fn tags(pairs: &[(&str, &str)]) -> SourceMatch {
        SourceMatch::Tags(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn ctx(rules: Vec<PermissionRule>, endpoints: Vec<Endpoint>) -> ProxyContext {
        ProxyContext {
            mesh: "default".into(),
            name: "web-1".into(),
            address: "10.0.0.1".into(),
            mtls: Some(MeshMtls {
                mode: MtlsMode::Strict,
            }),
            inbounds: vec![InboundContext {
                port: 8080,
                service_address: "127.0.0.1".into(),
                service_port: 8081,
                service: "web".into(),
                protocol: Protocol::Http,
                tags: Default::default(),
                permissions: InboundPermissions { rules },
            }],
            outbounds: vec![OutboundContext {
                address: "127.0.0.1".into(),
                port: 10001,
                service: "backend".into(),
                protocol: Protocol::Tcp,
                endpoints,
                policies: Default::default(),
                external: false,
            }],
        }
    }

    #[test]
    fn shared_assignments_give_the_same_output_and_follow_endpoint_changes() {
        let cache = AssignmentCache::default();
        let one = vec![endpoint("10.0.0.1", None)];
        let c = ctx(vec![], one.clone());
        let plain = generate(&c).expect("generates");
        let first = generate_with(&c, Some(&cache)).expect("generates");
        assert_eq!(first, plain);
        // Another proxy reaching the same cluster with the same endpoints: taken from the cache.
        let mut made = false;
        let cached = cache.get_or_make("backend", &one, || {
            made = true;
            EnvoyResource::new(&Resource::ClusterLoadAssignment(load_assignment(
                "backend", &one,
            )))
        });
        assert!(!made, "the assignment was generated again");
        assert!(first.contains(&cached));
        // New endpoints: a new assignment, not the cached one.
        let two = vec![endpoint("10.0.0.1", None), endpoint("10.0.0.2", None)];
        let changed = generate_with(&ctx(vec![], two.clone()), Some(&cache)).expect("generates");
        assert_eq!(changed, generate(&ctx(vec![], two)).expect("generates"));
        assert_ne!(changed, first);
    }

    #[test]
    fn mesh_timeout_values_replace_the_defaults_they_set() {
        let mut c = ctx(vec![], vec![endpoint("10.0.0.1", None)]);
        c.outbounds[0].policies.mesh_timeout = Some(TimeoutConf {
            connection_timeout: Some(model::Duration::from_secs(2)),
            idle_timeout: Some(model::Duration::from_secs(20)),
            ..TimeoutConf::default()
        });
        let out = generate(&c).expect("generates");
        let cluster = out
            .iter()
            .find(|r| r.type_url.ends_with("Cluster") && r.name == "backend")
            .expect("cluster");
        assert_eq!(cluster.json["connect_timeout"], "2s", "{}", cluster.json);
        let listener = out
            .iter()
            .find(|r| r.name.starts_with("outbound:"))
            .expect("listener")
            .json
            .to_string();
        assert!(listener.contains("\"idle_timeout\":\"20s\""), "{listener}");
        // Unset values keep Kuma's defaults.
        let default = generate(&ctx(vec![], vec![endpoint("10.0.0.1", None)])).expect("generates");
        let cluster = default
            .iter()
            .find(|r| r.type_url.ends_with("Cluster") && r.name == "backend")
            .expect("cluster");
        assert_eq!(cluster.json["connect_timeout"], "5s");
    }

    fn endpoint(address: &str, zone: Option<&str>) -> Endpoint {
        Endpoint {
            address: address.into(),
            port: 80,
            weight: 1,
            zone: zone.map(str::to_string),
        }
    }

    #[test]
    fn same_input_gives_identical_output() {
        let rules = vec![PermissionRule {
            source: tags(&[("kuma.io/service", "a")]),
            action: PermissionAction::Allow,
        }];
        let c = ctx(rules, vec![endpoint("10.0.0.2", None)]);
        let a = generate(&c).expect("generates");
        let b = generate(&c).expect("generates");
        assert_eq!(a, b);
        let versions: Vec<_> = a.iter().map(|r| r.version.clone()).collect();
        let versions_b: Vec<_> = b.iter().map(|r| r.version.clone()).collect();
        assert_eq!(versions, versions_b);
        let keys: Vec<_> = a
            .iter()
            .map(|r| (r.type_url.clone(), r.name.clone()))
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn endpoint_and_outbound_order_does_not_matter() {
        let e = vec![
            endpoint("10.0.0.3", Some("west")),
            endpoint("10.0.0.2", None),
            endpoint("10.0.0.9", Some("east")),
            endpoint("10.0.0.1", None),
        ];
        let mut reversed = e.clone();
        reversed.reverse();
        let mut a = ctx(vec![], e);
        let mut b = ctx(vec![], reversed);
        let second = OutboundContext {
            address: "127.0.0.1".into(),
            port: 10002,
            service: "db".into(),
            protocol: Protocol::Tcp,
            endpoints: vec![],
            policies: Default::default(),
            external: false,
        };
        a.outbounds.push(second.clone());
        b.outbounds.insert(0, second);
        let ra = generate(&a).expect("a");
        let rb = generate(&b).expect("b");
        assert_eq!(ra, rb);
        let cla = ra
            .iter()
            .find(|r| {
                r.type_url == model::type_urls::CLUSTER_LOAD_ASSIGNMENT && r.name == "backend"
            })
            .expect("cla");
        let zones: Vec<_> = cla.json["endpoints"]
            .as_array()
            .expect("endpoints")
            .iter()
            .map(|l| l["locality"]["zone"].clone())
            .collect();
        assert_eq!(
            zones,
            vec![serde_json::Value::Null, "east".into(), "west".into()]
        );
    }

    /// Evaluates an RBAC principal against a client holding these URI SANs (`None`: no
    /// certificate), the way Envoy does.
    fn matches(p: &Principal, sans: Option<&[&str]>) -> bool {
        match p {
            Principal::Any(any) => *any,
            Principal::Authenticated(a) => sans.is_some_and(|sans| {
                sans.iter().any(|san| match &a.principal_name {
                    StringMatcher::Exact(e) => san == e,
                    StringMatcher::Prefix(pre) => san.starts_with(pre.as_str()),
                })
            }),
            Principal::AndIds(s) => s.ids.iter().all(|p| matches(p, sans)),
            Principal::OrIds(s) => s.ids.iter().any(|p| matches(p, sans)),
            Principal::NotId(p) => !matches(p, sans),
        }
    }

    fn admitted(rbac: &Rbac, sans: Option<&[&str]>) -> bool {
        let any = rbac
            .policies
            .values()
            .any(|p| p.principals.iter().any(|pr| matches(pr, sans)));
        match rbac.action {
            RbacAction::Allow => any,
            RbacAction::Deny => !any,
        }
    }

    /// The reference semantics: the first rule whose source matches decides.
    fn first_match(rules: &[PermissionRule], sans: Option<&[&str]>, mesh: &str) -> bool {
        for rule in rules {
            let hit = match (&rule.source, sans) {
                (SourceMatch::Any, Some(sans)) => sans
                    .iter()
                    .any(|s| s.starts_with(&format!("spiffe://{mesh}/"))),
                (SourceMatch::Any, None) => true,
                (SourceMatch::Tags(_), None) => false,
                (SourceMatch::Tags(t), Some(sans)) => t.iter().all(|(k, v)| {
                    let uri = if k == SERVICE_TAG {
                        spiffe_id(mesh, v)
                    } else {
                        tag_uri(k, v)
                    };
                    sans.contains(&uri.as_str())
                }),
            };
            if hit {
                return rule.action != PermissionAction::Deny;
            }
        }
        false
    }

    #[test]
    fn rbac_implements_first_match_wins() {
        let rule = |source, action| PermissionRule { source, action };
        let rule_sets = vec![
            vec![],
            vec![rule(SourceMatch::Any, PermissionAction::Allow)],
            vec![
                rule(tags(&[("kuma.io/service", "web")]), PermissionAction::Allow),
                rule(SourceMatch::Any, PermissionAction::Deny),
            ],
            vec![
                rule(tags(&[("kuma.io/service", "web")]), PermissionAction::Deny),
                rule(SourceMatch::Any, PermissionAction::Allow),
            ],
            vec![
                rule(tags(&[("version", "v2")]), PermissionAction::Deny),
                rule(tags(&[("kuma.io/service", "web")]), PermissionAction::Allow),
                rule(tags(&[("kuma.io/service", "api")]), PermissionAction::Deny),
                rule(SourceMatch::Any, PermissionAction::Allow),
            ],
        ];
        let clients: Vec<Option<Vec<&str>>> = vec![
            None,
            Some(vec!["spiffe://default/web"]),
            Some(vec!["spiffe://default/web", "kuma://version/v2"]),
            Some(vec!["spiffe://default/api"]),
            Some(vec!["spiffe://other/web"]),
            Some(vec!["spiffe://default/db", "kuma://version/v1"]),
        ];
        for rules in &rule_sets {
            for client in &clients {
                let sans = client.as_deref();
                let peer = if sans.is_some() {
                    Peer::Mtls { mesh: "default" }
                } else {
                    Peer::Plaintext
                };
                let rbac = allow_rbac(rules, peer, false);
                assert_eq!(
                    admitted(&rbac, sans),
                    first_match(rules, sans, "default"),
                    "rules {rules:?}, client {client:?}"
                );
            }
        }
    }

    #[test]
    fn shadow_deny_allows_but_shadows() {
        let rules = vec![PermissionRule {
            source: SourceMatch::Any,
            action: PermissionAction::AllowWithShadowDeny,
        }];
        let peer = Peer::Mtls { mesh: "default" };
        let sans: &[&str] = &["spiffe://default/web"];
        assert!(admitted(&allow_rbac(&rules, peer, false), Some(sans)));
        assert!(!admitted(&allow_rbac(&rules, peer, true), Some(sans)));
    }

    #[test]
    fn invalid_input_is_an_error_naming_the_field() {
        let mut c = ctx(vec![], vec![endpoint("not-an-ip", None)]);
        assert_eq!(
            generate(&c),
            Err(GenerateError::InvalidAddress {
                field: "outbounds[0].endpoints[0].address".into(),
                value: "not-an-ip".into()
            })
        );
        c.outbounds[0].endpoints.clear();
        c.inbounds[0].service_port = 0;
        assert_eq!(
            generate(&c),
            Err(GenerateError::ZeroPort {
                field: "inbounds[0].servicePort".into()
            })
        );
    }

    #[test]
    fn conflicting_local_clusters_are_rejected() {
        let mut c = ctx(vec![], vec![]);
        let mut second = c.inbounds[0].clone();
        second.port = 9090;
        second.protocol = Protocol::Grpc;
        c.inbounds.push(second.clone());
        assert!(matches!(generate(&c), Err(GenerateError::Conflict { .. })));
        // The same application behind two listener ports is fine.
        c.inbounds[1].protocol = Protocol::Http;
        assert!(generate(&c).is_ok());
    }

    #[test]
    fn sni_names_service_and_mesh() {
        assert_eq!(outbound_sni("backend", "default"), "backend{mesh=default}");
    }
}
