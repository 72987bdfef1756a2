//! Envoy's resources as plain serde types that (de)serialize with Envoy's own JSON field names.
//!
//! Only the fields Atoll sets are modelled. The JSON produced here is what Envoy accepts in a
//! bootstrap or through `envoy --mode validate`: snake_case field names, `@type` on every typed
//! config (`google.protobuf.Any`), durations as strings (`"5s"`, `"0.025s"`), enums by name, and
//! optional fields left out when unset. Maps are `BTreeMap`s so the output is deterministic.
//!
//! `atoll_xds::proto` converts each type into its `envoy-types` protobuf message for the wire.
//! This crate depends on serde alone: `atoll-core`'s policy configurers build these types, and
//! core must stay free of the protobuf and gRPC stack (the CLI, the store and KDS use core).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

// ---------------------------------------------------------------------------------------------
// Type URLs and well-known names
// ---------------------------------------------------------------------------------------------

/// Type URLs of the typed configs and resources Atoll uses.
pub mod type_urls {
    pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
    pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    pub const CLUSTER_LOAD_ASSIGNMENT: &str =
        "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
    pub const ROUTE_CONFIGURATION: &str =
        "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
    pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
    pub const TCP_PROXY: &str =
        "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";
    pub const HTTP_CONNECTION_MANAGER: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
    pub const NETWORK_RBAC: &str =
        "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC";
    pub const HTTP_RBAC: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
    pub const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
    pub const TLS_INSPECTOR: &str =
        "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector";
    pub const DOWNSTREAM_TLS_CONTEXT: &str =
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
    pub const UPSTREAM_TLS_CONTEXT: &str =
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
    pub const UPSTREAM_HTTP_PROTOCOL_OPTIONS: &str =
        "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
}

/// Extension names Envoy knows the filters and sockets by.
pub mod names {
    pub const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";
    pub const HTTP_CONNECTION_MANAGER: &str = "envoy.filters.network.http_connection_manager";
    pub const NETWORK_RBAC: &str = "envoy.filters.network.rbac";
    pub const HTTP_RBAC: &str = "envoy.filters.http.rbac";
    pub const ROUTER: &str = "envoy.filters.http.router";
    pub const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";
    pub const TLS_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.tls";
    /// The key of `Cluster.typed_extension_protocol_options` for upstream HTTP options.
    pub const UPSTREAM_HTTP_PROTOCOL_OPTIONS: &str =
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
}

// ---------------------------------------------------------------------------------------------
// Duration
// ---------------------------------------------------------------------------------------------

/// A `google.protobuf.Duration` with millisecond precision, written as Envoy's JSON expects:
/// whole seconds as `"5s"`, fractions as `"0.025s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration {
    millis: u64,
}

impl Duration {
    pub const ZERO: Duration = Duration { millis: 0 };

    pub const fn from_millis(millis: u64) -> Self {
        Duration { millis }
    }

    pub const fn from_secs(secs: u64) -> Self {
        Duration {
            millis: secs * 1000,
        }
    }

    pub const fn from_mins(mins: u64) -> Self {
        Duration::from_secs(mins * 60)
    }

    pub const fn from_hours(hours: u64) -> Self {
        Duration::from_secs(hours * 3600)
    }

    pub const fn as_millis(self) -> u64 {
        self.millis
    }

    /// Whole seconds (protobuf `seconds`).
    pub const fn seconds(self) -> i64 {
        (self.millis / 1000) as i64
    }

    /// The sub-second part in nanoseconds (protobuf `nanos`).
    pub const fn nanos(self) -> i32 {
        ((self.millis % 1000) * 1_000_000) as i32
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.millis / 1000;
        let frac = self.millis % 1000;
        if frac == 0 {
            write!(f, "{secs}s")
        } else {
            let digits = format!("{frac:03}");
            write!(f, "{secs}.{}s", digits.trim_end_matches('0'))
        }
    }
}

impl std::str::FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("invalid duration {s:?}: expected seconds like \"5s\" or \"0.025s\"");
        let number = s.strip_suffix('s').ok_or_else(bad)?;
        let (whole, frac) = match number.split_once('.') {
            Some((w, f)) => (w, f),
            None => (number, ""),
        };
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let secs: u64 = whole.parse().map_err(|_| bad())?;
        let mut millis_digits = frac.chars().take(3).collect::<String>();
        while millis_digits.len() < 3 {
            millis_digits.push('0');
        }
        let millis: u64 = millis_digits.parse().map_err(|_| bad())?;
        secs.checked_mul(1000)
            .and_then(|m| m.checked_add(millis))
            .map(Duration::from_millis)
            .ok_or_else(bad)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------------------------
// Core
// ---------------------------------------------------------------------------------------------

/// `config.core.v3.Address` (socket addresses only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub socket_address: SocketAddress,
}

impl Address {
    pub fn socket(address: impl Into<String>, port: u16) -> Self {
        Address {
            socket_address: SocketAddress {
                address: address.into(),
                port_value: u32::from(port),
            },
        }
    }
}

/// `config.core.v3.SocketAddress` (TCP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketAddress {
    pub address: String,
    pub port_value: u32,
}

/// `config.core.v3.ApiVersion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApiVersion {
    V3,
}

/// `config.core.v3.AggregatedConfigSource`: an empty message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregatedConfigSource {}

/// `config.core.v3.ConfigSource`: always "over the ADS stream" in Atoll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSource {
    pub ads: AggregatedConfigSource,
    pub resource_api_version: ApiVersion,
}

impl ConfigSource {
    /// `{ads: {}, resource_api_version: V3}`.
    pub fn ads() -> Self {
        ConfigSource {
            ads: AggregatedConfigSource {},
            resource_api_version: ApiVersion::V3,
        }
    }
}

/// `config.core.v3.DataSource`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataSource {
    InlineString(String),
    Filename(String),
}

/// `config.core.v3.TrafficDirection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrafficDirection {
    #[serde(rename = "INBOUND")]
    Inbound,
    #[serde(rename = "OUTBOUND")]
    Outbound,
}

/// `config.core.v3.TransportSocket`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransportSocket {
    pub name: String,
    pub typed_config: TypedConfig,
}

impl TransportSocket {
    pub fn downstream_tls(ctx: DownstreamTlsContext) -> Self {
        TransportSocket {
            name: names::TLS_TRANSPORT_SOCKET.to_string(),
            typed_config: TypedConfig::DownstreamTlsContext(ctx),
        }
    }

    pub fn upstream_tls(ctx: UpstreamTlsContext) -> Self {
        TransportSocket {
            name: names::TLS_TRANSPORT_SOCKET.to_string(),
            typed_config: TypedConfig::UpstreamTlsContext(ctx),
        }
    }
}

/// `config.core.v3.HttpProtocolOptions` (the common HTTP options).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommonHttpProtocolOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
}

/// `config.core.v3.Http2ProtocolOptions` (defaults only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Http2ProtocolOptions {}

/// `config.core.v3.Http1ProtocolOptions` (defaults only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Http1ProtocolOptions {}

/// `type.matcher.v3.StringMatcher`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StringMatcher {
    Exact(String),
    Prefix(String),
}

// ---------------------------------------------------------------------------------------------
// Typed configs (google.protobuf.Any)
// ---------------------------------------------------------------------------------------------

/// Every typed config Atoll puts in an `Any`, tagged with its `@type` in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "@type")]
pub enum TypedConfig {
    #[serde(rename = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy")]
    TcpProxy(TcpProxy),
    #[serde(
        rename = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
    )]
    HttpConnectionManager(Box<HttpConnectionManager>),
    #[serde(rename = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC")]
    NetworkRbac(NetworkRbac),
    #[serde(rename = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC")]
    HttpRbac(HttpRbac),
    #[serde(rename = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router")]
    Router(Router),
    #[serde(
        rename = "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
    )]
    TlsInspector(TlsInspector),
    #[serde(
        rename = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
    )]
    DownstreamTlsContext(DownstreamTlsContext),
    #[serde(
        rename = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
    )]
    UpstreamTlsContext(UpstreamTlsContext),
    #[serde(rename = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions")]
    UpstreamHttpProtocolOptions(UpstreamHttpProtocolOptions),
}

impl TypedConfig {
    /// The `@type` of this config.
    pub fn type_url(&self) -> &'static str {
        match self {
            TypedConfig::TcpProxy(_) => type_urls::TCP_PROXY,
            TypedConfig::HttpConnectionManager(_) => type_urls::HTTP_CONNECTION_MANAGER,
            TypedConfig::NetworkRbac(_) => type_urls::NETWORK_RBAC,
            TypedConfig::HttpRbac(_) => type_urls::HTTP_RBAC,
            TypedConfig::Router(_) => type_urls::ROUTER,
            TypedConfig::TlsInspector(_) => type_urls::TLS_INSPECTOR,
            TypedConfig::DownstreamTlsContext(_) => type_urls::DOWNSTREAM_TLS_CONTEXT,
            TypedConfig::UpstreamTlsContext(_) => type_urls::UPSTREAM_TLS_CONTEXT,
            TypedConfig::UpstreamHttpProtocolOptions(_) => {
                type_urls::UPSTREAM_HTTP_PROTOCOL_OPTIONS
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Listener
// ---------------------------------------------------------------------------------------------

/// `config.listener.v3.Listener`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listener {
    pub name: String,
    pub address: Address,
    #[serde(default)]
    pub filter_chains: Vec<FilterChain>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listener_filters: Vec<ListenerFilter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_direction: Option<TrafficDirection>,
}

/// `config.listener.v3.ListenerFilter`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListenerFilter {
    pub name: String,
    pub typed_config: TypedConfig,
}

impl ListenerFilter {
    pub fn tls_inspector() -> Self {
        ListenerFilter {
            name: names::TLS_INSPECTOR.to_string(),
            typed_config: TypedConfig::TlsInspector(TlsInspector {}),
        }
    }
}

/// `extensions.filters.listener.tls_inspector.v3.TlsInspector` (defaults only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsInspector {}

/// `config.listener.v3.FilterChain`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilterChain {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_chain_match: Option<FilterChainMatch>,
    pub filters: Vec<Filter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport_socket: Option<TransportSocket>,
}

/// `config.listener.v3.FilterChainMatch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterChainMatch {
    /// `"tls"` (set by the TLS inspector) or `"raw_buffer"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport_protocol: Option<String>,
    /// The SNI values (from the TLS inspector) this chain serves; empty matches any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_names: Vec<String>,
}

/// `config.listener.v3.Filter`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    pub name: String,
    pub typed_config: TypedConfig,
}

// ---------------------------------------------------------------------------------------------
// Network filters
// ---------------------------------------------------------------------------------------------

/// `extensions.filters.network.tcp_proxy.v3.TcpProxy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpProxy {
    pub stat_prefix: String,
    pub cluster: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connect_attempts: Option<u32>,
}

/// `extensions.filters.network.rbac.v3.RBAC`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkRbac {
    pub stat_prefix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Rbac>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_rules: Option<Rbac>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_rules_stat_prefix: Option<String>,
}

/// `extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpConnectionManager {
    pub stat_prefix: String,
    pub codec_type: CodecType,
    pub route_config: RouteConfiguration,
    pub http_filters: Vec<HttpFilter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_http_protocol_options: Option<CommonHttpProtocolOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_idle_timeout: Option<Duration>,
}

/// `HttpConnectionManager.CodecType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CodecType {
    #[serde(rename = "AUTO")]
    Auto,
    #[serde(rename = "HTTP1")]
    Http1,
    #[serde(rename = "HTTP2")]
    Http2,
}

/// `extensions.filters.network.http_connection_manager.v3.HttpFilter`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpFilter {
    pub name: String,
    pub typed_config: TypedConfig,
}

impl HttpFilter {
    pub fn router() -> Self {
        HttpFilter {
            name: names::ROUTER.to_string(),
            typed_config: TypedConfig::Router(Router {}),
        }
    }
}

/// `extensions.filters.http.router.v3.Router` (defaults only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Router {}

/// `extensions.filters.http.rbac.v3.RBAC`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpRbac {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Rbac>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_rules: Option<Rbac>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_rules_stat_prefix: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// RBAC
// ---------------------------------------------------------------------------------------------

/// `config.rbac.v3.RBAC`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rbac {
    pub action: RbacAction,
    #[serde(default)]
    pub policies: BTreeMap<String, Policy>,
}

/// `config.rbac.v3.RBAC.Action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RbacAction {
    #[serde(rename = "ALLOW")]
    Allow,
    #[serde(rename = "DENY")]
    Deny,
}

/// `config.rbac.v3.Policy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub permissions: Vec<Permission>,
    pub principals: Vec<Principal>,
}

/// `config.rbac.v3.Permission` (Atoll only needs "any").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    Any(bool),
}

/// `config.rbac.v3.Principal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Principal {
    Any(bool),
    Authenticated(Authenticated),
    AndIds(PrincipalSet),
    OrIds(PrincipalSet),
    NotId(Box<Principal>),
}

/// `config.rbac.v3.Principal.Set`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalSet {
    pub ids: Vec<Principal>,
}

/// `config.rbac.v3.Principal.Authenticated`: matches the peer certificate's URI SANs (any of
/// them), else its DNS SANs, else its subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authenticated {
    pub principal_name: StringMatcher,
}

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

/// `config.route.v3.RouteConfiguration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteConfiguration {
    pub name: String,
    pub virtual_hosts: Vec<VirtualHost>,
}

/// `config.route.v3.VirtualHost`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VirtualHost {
    pub name: String,
    pub domains: Vec<String>,
    pub routes: Vec<Route>,
}

/// `config.route.v3.Route` (forwarding routes only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "match")]
    pub route_match: RouteMatch,
    pub route: RouteAction,
}

/// `config.route.v3.RouteMatch` (path prefix only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteMatch {
    pub prefix: String,
}

/// `config.route.v3.RouteAction`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteAction {
    pub cluster: String,
    /// The whole-request timeout; `0s` disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicy>,
    /// Rewrites the Host header to the DNS name of the chosen upstream host (STRICT_DNS and
    /// LOGICAL_DNS clusters only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_host_rewrite: Option<bool>,
}

/// `config.route.v3.RetryPolicy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub retry_on: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_back_off: Option<RetryBackOff>,
}

/// `config.route.v3.RetryPolicy.RetryBackOff`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryBackOff {
    pub base_interval: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_interval: Option<Duration>,
}

// ---------------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------------

/// `extensions.transport_sockets.tls.v3.DownstreamTlsContext`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DownstreamTlsContext {
    pub common_tls_context: CommonTlsContext,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_client_certificate: Option<bool>,
}

/// `extensions.transport_sockets.tls.v3.UpstreamTlsContext`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamTlsContext {
    pub common_tls_context: CommonTlsContext,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
}

/// `extensions.transport_sockets.tls.v3.CommonTlsContext`. At most one of
/// `validation_context` and `combined_validation_context` is set (a oneof in the proto).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CommonTlsContext {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alpn_protocols: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls_certificate_sds_secret_configs: Vec<SdsSecretConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_context: Option<CertificateValidationContext>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub combined_validation_context: Option<CombinedValidationContext>,
}

/// `CommonTlsContext.CombinedCertificateValidationContext`: static SAN checks combined with a
/// trusted CA delivered by SDS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CombinedValidationContext {
    pub default_validation_context: CertificateValidationContext,
    pub validation_context_sds_secret_config: SdsSecretConfig,
}

/// `extensions.transport_sockets.tls.v3.CertificateValidationContext`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateValidationContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_ca: Option<DataSource>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_typed_subject_alt_names: Vec<SubjectAltNameMatcher>,
}

/// `extensions.transport_sockets.tls.v3.SubjectAltNameMatcher`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectAltNameMatcher {
    pub san_type: SanType,
    pub matcher: StringMatcher,
}

/// `SubjectAltNameMatcher.SanType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SanType {
    #[serde(rename = "URI")]
    Uri,
    #[serde(rename = "DNS")]
    Dns,
}

/// `extensions.transport_sockets.tls.v3.SdsSecretConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SdsSecretConfig {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sds_config: Option<ConfigSource>,
}

impl SdsSecretConfig {
    /// A secret fetched over ADS.
    pub fn ads(name: impl Into<String>) -> Self {
        SdsSecretConfig {
            name: name.into(),
            sds_config: Some(ConfigSource::ads()),
        }
    }
}

/// `extensions.transport_sockets.tls.v3.Secret`: either a certificate with its key, or a
/// validation context (trusted CA). Exactly one of the two is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_certificate: Option<TlsCertificate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_context: Option<CertificateValidationContext>,
}

/// `extensions.transport_sockets.tls.v3.TlsCertificate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsCertificate {
    pub certificate_chain: DataSource,
    pub private_key: DataSource,
}

// ---------------------------------------------------------------------------------------------
// Clusters and endpoints
// ---------------------------------------------------------------------------------------------

/// `config.cluster.v3.Cluster`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub name: String,
    #[serde(rename = "type")]
    pub discovery_type: DiscoveryType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eds_cluster_config: Option<EdsClusterConfig>,
    pub connect_timeout: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_assignment: Option<ClusterLoadAssignment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breakers: Option<CircuitBreakers>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub typed_extension_protocol_options: BTreeMap<String, TypedConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport_socket: Option<TransportSocket>,
}

/// `Cluster.DiscoveryType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiscoveryType {
    #[serde(rename = "STATIC")]
    Static,
    #[serde(rename = "STRICT_DNS")]
    StrictDns,
    #[serde(rename = "EDS")]
    Eds,
}

/// `Cluster.EdsClusterConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdsClusterConfig {
    pub eds_config: ConfigSource,
}

/// `config.cluster.v3.CircuitBreakers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitBreakers {
    pub thresholds: Vec<Thresholds>,
}

/// `CircuitBreakers.Thresholds` (default routing priority).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thresholds {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_requests: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
}

/// `config.cluster.v3.OutlierDetection` (the consecutive-failure detectors).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutlierDetection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_5xx: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcing_consecutive_5xx: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_gateway_failure: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcing_consecutive_gateway_failure: Option<u32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub split_external_local_origin_errors: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_local_origin_failure: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcing_consecutive_local_origin_failure: Option<u32>,
}

/// `extensions.upstreams.http.v3.HttpProtocolOptions`: which HTTP version Envoy speaks to the
/// upstream, and the upstream connection idle timeout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamHttpProtocolOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_http_protocol_options: Option<CommonHttpProtocolOptions>,
    pub explicit_http_config: ExplicitHttpConfig,
}

/// `HttpProtocolOptions.ExplicitHttpConfig`: exactly one protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExplicitHttpConfig {
    HttpProtocolOptions(Http1ProtocolOptions),
    Http2ProtocolOptions(Http2ProtocolOptions),
}

/// `config.endpoint.v3.ClusterLoadAssignment`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterLoadAssignment {
    pub cluster_name: String,
    #[serde(default)]
    pub endpoints: Vec<LocalityLbEndpoints>,
}

/// `config.endpoint.v3.LocalityLbEndpoints`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalityLbEndpoints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<Locality>,
    pub lb_endpoints: Vec<LbEndpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancing_weight: Option<u32>,
    /// 0 is the highest priority; Envoy spills to higher numbers when lower ones are unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
}

/// `config.core.v3.Locality`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Locality {
    pub zone: String,
}

/// `config.endpoint.v3.LbEndpoint`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbEndpoint {
    pub endpoint: Endpoint,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancing_weight: Option<u32>,
}

/// `config.endpoint.v3.Endpoint`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub address: Address,
}

// ---------------------------------------------------------------------------------------------
// Top-level resources
// ---------------------------------------------------------------------------------------------

/// One top-level xDS resource; serializes as the bare resource (no `@type`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Resource {
    Listener(Listener),
    Cluster(Box<Cluster>),
    ClusterLoadAssignment(ClusterLoadAssignment),
    Secret(Secret),
}

impl Resource {
    /// The xDS type URL of the resource kind.
    pub fn type_url(&self) -> &'static str {
        match self {
            Resource::Listener(_) => type_urls::LISTENER,
            Resource::Cluster(_) => type_urls::CLUSTER,
            Resource::ClusterLoadAssignment(_) => type_urls::CLUSTER_LOAD_ASSIGNMENT,
            Resource::Secret(_) => type_urls::SECRET,
        }
    }

    /// The resource name xDS keys it by.
    pub fn name(&self) -> &str {
        match self {
            Resource::Listener(l) => &l.name,
            Resource::Cluster(c) => &c.name,
            Resource::ClusterLoadAssignment(c) => &c.cluster_name,
            Resource::Secret(s) => &s.name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_envoy_json() {
        assert_eq!(Duration::from_secs(5).to_string(), "5s");
        assert_eq!(Duration::from_millis(25).to_string(), "0.025s");
        assert_eq!(Duration::from_millis(250).to_string(), "0.25s");
        assert_eq!(Duration::from_hours(1).to_string(), "3600s");
        assert_eq!(Duration::ZERO.to_string(), "0s");
        assert_eq!("0.25s".parse::<Duration>(), Ok(Duration::from_millis(250)));
        assert_eq!("16s".parse::<Duration>(), Ok(Duration::from_secs(16)));
        assert!("16".parse::<Duration>().is_err());
        assert!("-1s".parse::<Duration>().is_err());
    }

    #[test]
    fn typed_config_carries_its_type_url() {
        let tc = TypedConfig::Router(Router {});
        let json = serde_json::to_value(&tc).expect("serializes");
        assert_eq!(json["@type"], type_urls::ROUTER);
        assert_eq!(tc.type_url(), type_urls::ROUTER);
        let back: TypedConfig = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, tc);
    }

    #[test]
    fn principals_use_envoy_oneof_names() {
        let p = Principal::AndIds(PrincipalSet {
            ids: vec![
                Principal::Authenticated(Authenticated {
                    principal_name: StringMatcher::Exact("spiffe://m/a".into()),
                }),
                Principal::NotId(Box::new(Principal::Any(true))),
            ],
        });
        let json = serde_json::to_string(&p).expect("serializes");
        assert_eq!(
            json,
            r#"{"and_ids":{"ids":[{"authenticated":{"principal_name":{"exact":"spiffe://m/a"}}},{"not_id":{"any":true}}]}}"#
        );
    }
}
