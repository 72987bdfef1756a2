//! `Mesh`: mTLS certificate authorities, the legacy logging/tracing/metrics backends, routing and
//! networking switches, membership constraints and the MeshService mode.

use std::time::Duration as StdDuration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::kinds::dataplane::{Tags, check_tags, is_hostname};
use crate::kinds::secret::DataSource;
use crate::path::FieldPath;
use crate::string_enum;
use crate::types::{Duration, parse_go_duration};
use crate::validate::{Validate, Violations, check_non_empty, check_port, parse_typed};

string_enum! {
    /// Certificate authority plugins. Kuma ships builtin and provided; vault, acmpca and
    /// certmanager come from Kong Mesh and are accepted with a free-form conf.
    pub enum CaBackendType {
        Builtin => "builtin",
        Provided => "provided",
        Vault => "vault",
        AcmPca => "acmpca",
        CertManager => "certmanager",
    }
}

string_enum! {
    /// How inbounds treat plaintext once mTLS is on.
    pub enum MtlsMode {
        Strict => "STRICT",
        Permissive => "PERMISSIVE",
    }
}

string_enum! {
    pub enum TracingBackendType {
        Zipkin => "zipkin",
        Datadog => "datadog",
    }
}

string_enum! {
    pub enum ZipkinApiVersion {
        HttpJson => "httpJson",
        HttpJsonV1 => "httpJsonV1",
        HttpProto => "httpProto",
    }
}

string_enum! {
    pub enum LoggingBackendType {
        File => "file",
        Tcp => "tcp",
    }
}

string_enum! {
    pub enum MetricsBackendType {
        Prometheus => "prometheus",
    }
}

string_enum! {
    pub enum PrometheusTlsMode {
        ActiveMtlsBackend => "activeMTLSBackend",
        ProvidedTls => "providedTLS",
        Disabled => "disabled",
    }
}

string_enum! {
    pub enum MeshServicesMode {
        Disabled => "Disabled",
        Everywhere => "Everywhere",
        ReachableBackends => "ReachableBackends",
        Exclusive => "Exclusive",
    }
}

/// The kind-specific fields of a Mesh (no `spec:` key in universal format).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshDoc {
    #[serde(default)]
    pub mtls: Option<Mtls>,
    #[serde(default)]
    pub tracing: Option<Tracing>,
    #[serde(default)]
    pub logging: Option<Logging>,
    /// Defaults for every proxy of the mesh (legacy; MeshMetric supersedes it).
    #[serde(default)]
    pub metrics: Option<Metrics>,
    #[serde(default)]
    pub networking: Option<MeshNetworking>,
    #[serde(default)]
    pub routing: Option<Routing>,
    #[serde(default)]
    pub constraints: Option<Constraints>,
    /// Default policies not to create with the mesh; `*` for all.
    #[serde(default)]
    pub skip_creating_initial_policies: Vec<String>,
    #[serde(default)]
    pub mesh_services: Option<MeshServices>,
    /// Never used. Kuma ignores unknown keys, and some of its documented universal examples wrap
    /// the fields in a Kubernetes-style `spec:`, which Kuma then ignores; accepted and ignored
    /// the same way so those manifests behave as they do on Kuma.
    #[serde(default)]
    pub spec: Option<serde_json::Value>,
}

impl MeshDoc {
    /// The enabled mTLS backend, when mTLS is on.
    pub fn enabled_mtls_backend(&self) -> Option<&CertificateAuthorityBackend> {
        let mtls = self.mtls.as_ref()?;
        let name = mtls.enabled_backend.as_deref()?;
        mtls.backends
            .iter()
            .find(|b| b.name.as_deref() == Some(name))
    }

    pub fn zone_egress_enabled(&self) -> bool {
        self.routing
            .as_ref()
            .and_then(|r| r.zone_egress)
            .unwrap_or(false)
    }

    pub fn mesh_services_mode(&self) -> MeshServicesMode {
        self.mesh_services
            .as_ref()
            .and_then(|m| m.mode.clone())
            .unwrap_or(MeshServicesMode::Disabled)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mtls {
    /// Name of the backend in use; mTLS is off when unset.
    #[serde(default)]
    pub enabled_backend: Option<String>,
    #[serde(default)]
    pub backends: Vec<CertificateAuthorityBackend>,
    /// Skips checking the CA.
    #[serde(default)]
    pub skip_validation: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateAuthorityBackend {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "type", default)]
    pub type_: Option<CaBackendType>,
    /// Settings of the certificates issued to proxies.
    #[serde(default)]
    pub dp_cert: Option<DpCert>,
    /// Plugin configuration; read it with `typed_conf`.
    #[serde(default)]
    pub conf: Option<serde_json::Value>,
    /// Defaults to STRICT.
    #[serde(default)]
    pub mode: Option<MtlsMode>,
    #[serde(default)]
    pub root_chain: Option<RootChain>,
}

/// A CA backend's `conf`, read according to its type.
#[derive(Debug, Clone)]
pub enum CaConf {
    Builtin(BuiltinCaConf),
    Provided(ProvidedCaConf),
    /// Types whose conf Atoll keeps as written (vault, acmpca, certmanager).
    Other(serde_json::Value),
}

impl CertificateAuthorityBackend {
    /// The conf read according to `type` (an empty conf when none is written).
    pub fn typed_conf(&self) -> Result<CaConf, serde_json::Error> {
        let conf = self
            .conf
            .clone()
            .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
        Ok(match self.type_ {
            Some(CaBackendType::Builtin) => CaConf::Builtin(serde_json::from_value(conf)?),
            Some(CaBackendType::Provided) => CaConf::Provided(serde_json::from_value(conf)?),
            _ => CaConf::Other(conf),
        })
    }

    pub fn mode(&self) -> MtlsMode {
        self.mode.clone().unwrap_or(MtlsMode::Strict)
    }

    /// Lifetime of proxy certificates; Kuma's default is 24 hours.
    pub fn dp_cert_expiration(&self) -> StdDuration {
        self.dp_cert
            .as_ref()
            .and_then(|d| d.rotation.as_ref())
            .and_then(|r| r.expiration.as_ref())
            .and_then(CertDuration::as_std)
            .unwrap_or(StdDuration::from_secs(24 * 3600))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DpCert {
    #[serde(default)]
    pub rotation: Option<Rotation>,
    /// Timeout of a certificate request to the CA.
    #[serde(default)]
    pub request_timeout: Option<Duration>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rotation {
    /// How long an issued certificate is valid.
    #[serde(default)]
    pub expiration: Option<CertDuration>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RootChain {
    /// Timeout of a root chain request to the CA; 10s when unset.
    #[serde(default)]
    pub request_timeout: Option<Duration>,
}

/// A certificate lifetime as Kuma writes it: a whole number and one of `y`, `w`, `d`, `h`, `m`,
/// `s`, `ms` (`1y`, `30d`, `24h`), or `0`. Go's duration syntax (`1h30m`) is accepted too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertDuration(pub String);

impl CertDuration {
    pub fn as_std(&self) -> Option<StdDuration> {
        parse_cert_duration(&self.0)
    }
}

/// Parses a `CertDuration`.
pub fn parse_cert_duration(s: &str) -> Option<StdDuration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let day = 24 * 3600;
    let seconds = match unit {
        "y" => 365 * day,
        "w" => 7 * day,
        "d" => day,
        _ => return parse_go_duration(s),
    };
    let n: u64 = number.parse().ok()?;
    n.checked_mul(seconds).map(StdDuration::from_secs)
}

impl<'de> Deserialize<'de> for CertDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(CertDuration(match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        }))
    }
}

impl Serialize for CertDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl Validate for CertDuration {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        if self.as_std().is_none() {
            v.add(
                at,
                format!(
                    "must be a duration such as 24h, 30d or 1y (got {:?})",
                    self.0
                ),
            );
        }
    }
}

/// `conf` of a builtin CA: the CA certificate Atoll generates.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuiltinCaConf {
    #[serde(default)]
    pub ca_cert: Option<CaCertConf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaCertConf {
    /// RSA key size of the CA.
    #[serde(rename = "RSAbits", default)]
    pub rsa_bits: Option<u32>,
    /// Lifetime of the CA certificate.
    #[serde(default)]
    pub expiration: Option<CertDuration>,
}

/// `conf` of a provided CA: the operator's certificate and key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvidedCaConf {
    #[serde(default)]
    pub cert: Option<DataSource>,
    #[serde(default)]
    pub key: Option<DataSource>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tracing {
    #[serde(default)]
    pub default_backend: Option<String>,
    #[serde(default)]
    pub backends: Vec<TracingBackend>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TracingBackend {
    #[serde(default)]
    pub name: Option<String>,
    /// Percentage of requests traced, 0-100; 100 when unset.
    #[serde(default)]
    pub sampling: Option<f64>,
    #[serde(rename = "type", default)]
    pub type_: Option<TracingBackendType>,
    /// Read with `zipkin_conf` or `datadog_conf` according to `type`.
    #[serde(default)]
    pub conf: Option<serde_json::Value>,
}

impl TracingBackend {
    pub fn zipkin_conf(&self) -> Option<ZipkinConf> {
        typed(&self.conf)
    }

    pub fn datadog_conf(&self) -> Option<DatadogConf> {
        typed(&self.conf)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZipkinConf {
    /// Collector URL with an explicit port.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub trace_id128bit: Option<bool>,
    #[serde(default)]
    pub api_version: Option<ZipkinApiVersion>,
    #[serde(default)]
    pub shared_span_context: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatadogConf {
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub port: Option<i64>,
    #[serde(default)]
    pub split_service: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Logging {
    #[serde(default)]
    pub default_backend: Option<String>,
    #[serde(default)]
    pub backends: Vec<LoggingBackend>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoggingBackend {
    #[serde(default)]
    pub name: Option<String>,
    /// Envoy access log format string.
    #[serde(default)]
    pub format: Option<String>,
    #[serde(rename = "type", default)]
    pub type_: Option<LoggingBackendType>,
    /// Read with `file_conf` or `tcp_conf` according to `type`.
    #[serde(default)]
    pub conf: Option<serde_json::Value>,
}

impl LoggingBackend {
    pub fn file_conf(&self) -> Option<FileLoggingConf> {
        typed(&self.conf)
    }

    pub fn tcp_conf(&self) -> Option<TcpLoggingConf> {
        typed(&self.conf)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileLoggingConf {
    #[serde(default)]
    pub path: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpLoggingConf {
    /// `host:port`.
    #[serde(default)]
    pub address: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    #[serde(default)]
    pub enabled_backend: Option<String>,
    #[serde(default)]
    pub backends: Vec<MetricsBackend>,
}

/// A metrics backend, in a Mesh or as a Dataplane's override.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsBackend {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "type", default)]
    pub type_: Option<MetricsBackendType>,
    /// Kept as written (Kuma keeps a free-form Struct); read with `prometheus_conf`.
    #[serde(default)]
    pub conf: Option<serde_json::Value>,
}

impl MetricsBackend {
    /// The conf as a Prometheus configuration (an empty one when no conf is written).
    pub fn prometheus_conf(&self) -> Result<PrometheusMetricsConf, serde_json::Error> {
        match &self.conf {
            None => Ok(PrometheusMetricsConf::default()),
            Some(c) => serde_json::from_value(c.clone()),
        }
    }

    /// Checks the backend type only.
    pub fn validate_type(&self, at: &FieldPath, v: &mut Violations) {
        match &self.type_ {
            Some(t) => t.validate(&at.field("type"), v),
            None => v.add(&at.field("type"), "must be defined"),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusMetricsConf {
    #[serde(default)]
    pub port: Option<i64>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub tags: Option<Tags>,
    #[serde(rename = "skipMTLS", default)]
    pub skip_mtls: Option<bool>,
    /// Application endpoints whose metrics the proxy merges in.
    #[serde(default)]
    pub aggregate: Vec<PrometheusAggregate>,
    #[serde(default)]
    pub envoy: Option<PrometheusEnvoy>,
    #[serde(default)]
    pub tls: Option<PrometheusTls>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusAggregate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub port: Option<i64>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub address: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusEnvoy {
    #[serde(default)]
    pub filter_regex: Option<String>,
    #[serde(default)]
    pub used_only: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusTls {
    #[serde(default)]
    pub mode: Option<PrometheusTlsMode>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshNetworking {
    #[serde(default)]
    pub outbound: Option<MeshOutbound>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshOutbound {
    /// Whether traffic to unknown destinations passes through; true when unset.
    #[serde(default)]
    pub passthrough: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Routing {
    #[serde(default)]
    pub locality_aware_load_balancing: Option<bool>,
    /// Send cross-zone and external traffic through the zone egress.
    #[serde(default)]
    pub zone_egress: Option<bool>,
    /// Block MeshExternalServices unless a MeshTrafficPermission allows them.
    #[serde(default)]
    pub default_forbid_mesh_external_service_access: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Constraints {
    #[serde(default)]
    pub dataplane_proxy: Option<DataplaneProxyConstraints>,
}

/// Which proxies may join the mesh: one requirement must match, no restriction may.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataplaneProxyConstraints {
    #[serde(default)]
    pub requirements: Vec<TagRule>,
    #[serde(default)]
    pub restrictions: Vec<TagRule>,
}

/// Tags a proxy must carry; a `*` value means any non-empty value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagRule {
    #[serde(default)]
    pub tags: Tags,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshServices {
    #[serde(default)]
    pub mode: Option<MeshServicesMode>,
}

fn typed<T: serde::de::DeserializeOwned + Default>(conf: &Option<serde_json::Value>) -> Option<T> {
    match conf {
        None => Some(T::default()),
        Some(c) => serde_json::from_value(c.clone()).ok(),
    }
}

/// Parses a backend's `conf` as `T` reporting unknown fields and type errors under `at`; an
/// absent conf reads as `T::default()`.
fn parse_conf<T: serde::de::DeserializeOwned + Default>(
    conf: &Option<serde_json::Value>,
    at: &FieldPath,
    v: &mut Violations,
) -> Option<T> {
    match conf {
        None => Some(T::default()),
        Some(c) => parse_typed::<T>(c, at, v),
    }
}

/// Checks backend names (non-empty, unique) and that `default` names one of them.
fn check_backend_names<'a>(
    names: impl Iterator<Item = Option<&'a str>>,
    default: Option<&str>,
    default_field: &str,
    at: &FieldPath,
    v: &mut Violations,
) {
    let mut seen: Vec<&str> = Vec::new();
    for (i, name) in names.enumerate() {
        let n_at = at.field("backends").index(i).field("name");
        match name {
            None => v.add(&n_at, "must be defined"),
            Some(n) if n.trim().is_empty() => v.add(&n_at, "must not be empty"),
            Some(n) if seen.contains(&n) => {
                v.add(&n_at, format!("{n:?} is already used by another backend"))
            }
            Some(n) => seen.push(n),
        }
    }
    if let Some(d) = default
        && !seen.contains(&d)
    {
        v.add(
            &at.field(default_field),
            format!("must name one of the backends (got {d:?})"),
        );
    }
}

fn validate_mtls(mtls: &Mtls, at: &FieldPath, v: &mut Violations) {
    check_backend_names(
        mtls.backends.iter().map(|b| b.name.as_deref()),
        mtls.enabled_backend.as_deref(),
        "enabledBackend",
        at,
        v,
    );
    for (i, b) in mtls.backends.iter().enumerate() {
        let b_at = at.field("backends").index(i);
        match &b.type_ {
            Some(t) => t.validate(&b_at.field("type"), v),
            None => v.add(&b_at.field("type"), "must be defined"),
        }
        b.mode.validate(&b_at.field("mode"), v);
        if let Some(dp) = &b.dp_cert {
            let dp_at = b_at.field("dpCert");
            if let Some(e) = dp.rotation.as_ref().and_then(|r| r.expiration.as_ref()) {
                e.validate(&dp_at.field("rotation").field("expiration"), v);
            }
            dp.request_timeout
                .validate(&dp_at.field("requestTimeout"), v);
        }
        if let Some(rc) = &b.root_chain {
            rc.request_timeout
                .validate(&b_at.field("rootChain").field("requestTimeout"), v);
        }
        let conf_at = b_at.field("conf");
        match b.type_ {
            Some(CaBackendType::Builtin) => {
                // Builtin CA material is stored in secrets named after the backend.
                if let Some(n) = b.name.as_deref().filter(|n| !n.is_empty())
                    && !(is_hostname(n) && !n.contains('_') && n == n.to_ascii_lowercase())
                {
                    v.add(
                        &b_at.field("name"),
                        "a builtin backend name must be a lowercase DNS name",
                    );
                }
                if let Some(conf) = parse_conf::<BuiltinCaConf>(&b.conf, &conf_at, v)
                    && let Some(ca) = &conf.ca_cert
                {
                    let ca_at = conf_at.field("caCert");
                    if ca.rsa_bits.is_some_and(|bits| bits < 1024) {
                        v.add(&ca_at.field("RSAbits"), "must be at least 1024");
                    }
                    ca.expiration.validate(&ca_at.field("expiration"), v);
                }
            }
            Some(CaBackendType::Provided) => {
                if let Some(conf) = parse_conf::<ProvidedCaConf>(&b.conf, &conf_at, v) {
                    for (name, ds) in [("cert", &conf.cert), ("key", &conf.key)] {
                        match ds {
                            Some(ds) => ds.validate(&conf_at.field(name), v),
                            None => {
                                v.add(&conf_at.field(name), "must be defined for a provided CA")
                            }
                        }
                    }
                }
            }
            _ => {
                if b.conf.as_ref().is_some_and(|c| !c.is_object()) {
                    v.add(&conf_at, "must be an object");
                }
            }
        }
    }
}

fn validate_tracing(tracing: &Tracing, at: &FieldPath, v: &mut Violations) {
    check_backend_names(
        tracing.backends.iter().map(|b| b.name.as_deref()),
        tracing.default_backend.as_deref(),
        "defaultBackend",
        at,
        v,
    );
    for (i, b) in tracing.backends.iter().enumerate() {
        let b_at = at.field("backends").index(i);
        if b.sampling.is_some_and(|s| !(0.0..=100.0).contains(&s)) {
            v.add(&b_at.field("sampling"), "must be in the range 0.0-100.0");
        }
        let conf_at = b_at.field("conf");
        match &b.type_ {
            None => v.add(&b_at.field("type"), "must be defined"),
            Some(TracingBackendType::Zipkin) => {
                if let Some(c) = parse_conf::<ZipkinConf>(&b.conf, &conf_at, v) {
                    c.api_version.validate(&conf_at.field("apiVersion"), v);
                    match c.url.as_deref() {
                        None | Some("") => v.add(&conf_at.field("url"), "must be defined"),
                        Some(u) if !url_has_port(u) => v.add(
                            &conf_at.field("url"),
                            "must be a URL with an explicit port (http://host:9411/api/v2/spans)",
                        ),
                        Some(_) => {}
                    }
                }
            }
            Some(TracingBackendType::Datadog) => {
                if let Some(c) = parse_conf::<DatadogConf>(&b.conf, &conf_at, v) {
                    match c.address.as_deref() {
                        Some(a) => check_non_empty(a, &conf_at.field("address"), v),
                        None => v.add(&conf_at.field("address"), "must be defined"),
                    }
                    match c.port {
                        Some(p) => check_port(p, &conf_at.field("port"), v),
                        None => v.add(&conf_at.field("port"), "must be defined"),
                    }
                }
            }
            Some(t) => t.validate(&b_at.field("type"), v),
        }
    }
}

/// `scheme://host:port[/path]`.
fn url_has_port(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let port = authority.rsplit_once(':').map(|(_, p)| p);
    !scheme.is_empty()
        && port.is_some_and(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
}

fn validate_logging(logging: &Logging, at: &FieldPath, v: &mut Violations) {
    check_backend_names(
        logging.backends.iter().map(|b| b.name.as_deref()),
        logging.default_backend.as_deref(),
        "defaultBackend",
        at,
        v,
    );
    for (i, b) in logging.backends.iter().enumerate() {
        let b_at = at.field("backends").index(i);
        let conf_at = b_at.field("conf");
        match &b.type_ {
            None => v.add(&b_at.field("type"), "must be defined"),
            Some(LoggingBackendType::File) => {
                if let Some(c) = parse_conf::<FileLoggingConf>(&b.conf, &conf_at, v)
                    && c.path.as_deref().is_none_or(|p| p.trim().is_empty())
                {
                    v.add(&conf_at.field("path"), "must be defined");
                }
            }
            Some(LoggingBackendType::Tcp) => {
                if let Some(c) = parse_conf::<TcpLoggingConf>(&b.conf, &conf_at, v) {
                    let ok = c.address.as_deref().is_some_and(|a| {
                        a.rsplit_once(':').is_some_and(|(h, p)| {
                            !h.is_empty() && !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit())
                        })
                    });
                    if !ok {
                        v.add(&conf_at.field("address"), "must be in the form host:port");
                    }
                }
            }
            Some(t) => t.validate(&b_at.field("type"), v),
        }
    }
}

fn validate_metrics(metrics: &Metrics, at: &FieldPath, v: &mut Violations) {
    check_backend_names(
        metrics.backends.iter().map(|b| b.name.as_deref()),
        metrics.enabled_backend.as_deref(),
        "enabledBackend",
        at,
        v,
    );
    for (i, b) in metrics.backends.iter().enumerate() {
        let b_at = at.field("backends").index(i);
        b.validate_type(&b_at, v);
        if b.type_ != Some(MetricsBackendType::Prometheus) {
            continue;
        }
        let conf_at = b_at.field("conf");
        let Some(c) = parse_conf::<PrometheusMetricsConf>(&b.conf, &conf_at, v) else {
            continue;
        };
        if let Some(p) = c.port {
            check_port(p, &conf_at.field("port"), v);
        }
        if let Some(tags) = &c.tags {
            check_tags(tags, &conf_at.field("tags"), v, false);
        }
        if let Some(tls) = &c.tls {
            tls.mode.validate(&conf_at.field("tls").field("mode"), v);
            if let Some(skip) = c.skip_mtls {
                let agrees = matches!(
                    (skip, &tls.mode),
                    (false, Some(PrometheusTlsMode::ActiveMtlsBackend))
                        | (true, Some(PrometheusTlsMode::Disabled))
                );
                if !agrees {
                    v.add(
                        &conf_at,
                        "skipMTLS and tls must not disagree; prefer tls.mode alone",
                    );
                }
            }
        }
        let mut names: Vec<&str> = Vec::new();
        for (j, a) in c.aggregate.iter().enumerate() {
            let a_at = conf_at.field("aggregate").index(j);
            match a.name.as_deref() {
                None => v.add(&a_at.field("name"), "must be defined"),
                Some(n) if names.contains(&n) => {
                    v.add(&a_at.field("name"), format!("{n:?} is already used"))
                }
                Some(n) => names.push(n),
            }
            if let Some(p) = a.port {
                check_port(p, &a_at.field("port"), v);
            }
        }
    }
}

fn validate_constraints(c: &Constraints, at: &FieldPath, v: &mut Violations) {
    let Some(dp) = &c.dataplane_proxy else {
        return;
    };
    let dp_at = at.field("dataplaneProxy");
    for (list, rules) in [
        ("requirements", &dp.requirements),
        ("restrictions", &dp.restrictions),
    ] {
        for (i, rule) in rules.iter().enumerate() {
            let t_at = dp_at.field(list).index(i).field("tags");
            if rule.tags.is_empty() {
                v.add(&t_at, "must have at least one tag");
            }
            for (k, val) in &rule.tags {
                let name_ok = !k.is_empty()
                    && k.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || b".-_:/".contains(&c));
                if !name_ok {
                    v.add(&t_at.key(k), "tag name must consist of alphanumeric characters, dots, dashes, slashes, colons and underscores");
                }
                let value_ok = val == "*"
                    || val
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || b".-_:/".contains(&c));
                if !value_ok {
                    v.add(&t_at.key(k), "tag value must consist of alphanumeric characters, dots, dashes, slashes, colons and underscores, or be \"*\"");
                }
            }
        }
    }
}

impl Validate for MeshDoc {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        if let Some(m) = &self.mtls {
            validate_mtls(m, &at.field("mtls"), v);
        }
        if let Some(t) = &self.tracing {
            validate_tracing(t, &at.field("tracing"), v);
        }
        if let Some(l) = &self.logging {
            validate_logging(l, &at.field("logging"), v);
        }
        if let Some(m) = &self.metrics {
            validate_metrics(m, &at.field("metrics"), v);
        }
        if let Some(c) = &self.constraints {
            validate_constraints(c, &at.field("constraints"), v);
        }
        for (i, p) in self.skip_creating_initial_policies.iter().enumerate() {
            check_non_empty(p, &at.field("skipCreatingInitialPolicies").index(i), v);
        }
        if let Some(ms) = &self.mesh_services {
            ms.mode.validate(&at.field("meshServices").field("mode"), v);
        }
        // The zone egress identifies the proxies it serves by their mesh certificates. Kuma's
        // validator refuses this, but its documentation shows the Mesh; accepted with a warning.
        if self.zone_egress_enabled()
            && self
                .mtls
                .as_ref()
                .and_then(|m| m.enabled_backend.as_deref())
                .is_none_or(str::is_empty)
        {
            v.warn(
                &at.field("mtls"),
                "should be set when routing.zoneEgress is enabled: the zone egress serves only \
                 meshes with mTLS, so this mesh's cross-zone and external traffic fails until \
                 mTLS is enabled",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Resource;
    use serde_json::json;

    fn fields(value: serde_json::Value) -> Vec<String> {
        Resource::from_value(value)
            .expect_err("invalid")
            .iter()
            .map(|x| x.field.clone())
            .collect()
    }

    #[test]
    fn valid_mesh_is_accepted_and_typed() {
        let r = Resource::from_value(json!({
            "type": "Mesh", "name": "default",
            "mtls": {
                "enabledBackend": "ca-1",
                "backends": [
                    {"name": "ca-1", "type": "builtin", "mode": "PERMISSIVE",
                     "dpCert": {"rotation": {"expiration": "1d"}, "requestTimeout": "10s"},
                     "conf": {"caCert": {"RSAbits": 2048, "expiration": "10y"}}},
                    {"name": "ca-2", "type": "provided",
                     "conf": {"cert": {"secret": "c"}, "key": {"file": "/k.pem"}}},
                    {"name": "ca-3", "type": "vault", "conf": {"fromCp": {"address": "x"}}}
                ]
            },
            "tracing": {"defaultBackend": "z", "backends": [
                {"name": "z", "type": "zipkin", "sampling": 50.0, "conf": {"url": "http://zipkin:9411/api/v2/spans"}}
            ]},
            "logging": {"backends": [{"name": "f", "type": "file", "conf": {"path": "/tmp/log"}}]},
            "routing": {"zoneEgress": true, "localityAwareLoadBalancing": true},
            "networking": {"outbound": {"passthrough": false}},
            "meshServices": {"mode": "Exclusive"},
            "skipCreatingInitialPolicies": ["*"]
        }))
        .expect("valid");
        let doc: MeshDoc =
            serde_json::from_value(serde_json::Value::Object(r.spec)).expect("typed");
        let ca = doc.enabled_mtls_backend().expect("enabled backend");
        assert_eq!(ca.mode(), MtlsMode::Permissive);
        assert_eq!(ca.dp_cert_expiration(), StdDuration::from_secs(86400));
        match ca.typed_conf().expect("conf") {
            CaConf::Builtin(b) => {
                assert_eq!(b.ca_cert.and_then(|c| c.rsa_bits), Some(2048))
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(doc.zone_egress_enabled());
        assert_eq!(doc.mesh_services_mode(), MeshServicesMode::Exclusive);
    }

    #[test]
    fn enabled_backend_duplicate_names_and_expiration_reported_together() {
        assert_eq!(
            fields(json!({
                "type": "Mesh", "name": "m",
                "mtls": {
                    "enabledBackend": "missing",
                    "backends": [
                        {"name": "ca", "type": "builtin", "dpCert": {"rotation": {"expiration": "forever"}}},
                        {"name": "ca", "type": "builtin"}
                    ]
                }
            })),
            vec![
                "mtls.backends[1].name",
                "mtls.enabledBackend",
                "mtls.backends[0].dpCert.rotation.expiration"
            ]
        );
    }

    #[test]
    fn provided_backend_needs_cert_and_key() {
        assert_eq!(
            fields(json!({
                "type": "Mesh", "name": "m",
                "mtls": {"backends": [
                    {"name": "p", "type": "provided", "mode": "LOOSE", "conf": {"cert": {}, "extra": 1}}
                ]}
            })),
            vec![
                "mtls.backends[0].mode",
                "mtls.backends[0].conf.extra",
                "mtls.backends[0].conf.cert",
                "mtls.backends[0].conf.key"
            ]
        );
    }

    #[test]
    fn legacy_backends_and_mesh_services_mode_are_checked() {
        assert_eq!(
            fields(json!({
                "type": "Mesh", "name": "m",
                "tracing": {"backends": [{"name": "z", "type": "zipkin", "sampling": 101, "conf": {"url": "http://zipkin/"}}]},
                "logging": {"defaultBackend": "nope", "backends": [{"name": "t", "type": "tcp", "conf": {"address": "nohost"}}]},
                "metrics": {"backends": [{"name": "p", "type": "statsd"}]},
                "constraints": {"dataplaneProxy": {"requirements": [{"tags": {}}]}},
                "meshServices": {"mode": "Sometimes"}
            })),
            vec![
                "tracing.backends[0].sampling",
                "tracing.backends[0].conf.url",
                "logging.defaultBackend",
                "logging.backends[0].conf.address",
                "metrics.backends[0].type",
                "constraints.dataplaneProxy.requirements[0].tags",
                "meshServices.mode"
            ]
        );
    }

    #[test]
    fn zone_egress_without_mtls_is_warned_about() {
        // Kuma's docs show this Mesh (its validator refuses it): accepted, with a warning.
        let (_, warnings) = Resource::from_value_with_warnings(
            json!({"type": "Mesh", "name": "m", "routing": {"zoneEgress": true}}),
        )
        .expect("accepted");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].field, "mtls");
        let with_mtls = json!({"type": "Mesh", "name": "m", "routing": {"zoneEgress": true},
            "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}});
        assert!(Resource::from_value(with_mtls).is_ok());
    }

    #[test]
    fn cert_durations_follow_kuma() {
        assert_eq!(
            parse_cert_duration("1y"),
            Some(StdDuration::from_secs(365 * 86400))
        );
        assert_eq!(
            parse_cert_duration("2w"),
            Some(StdDuration::from_secs(14 * 86400))
        );
        assert_eq!(
            parse_cert_duration("10h"),
            Some(StdDuration::from_secs(36000))
        );
        assert_eq!(parse_cert_duration("0"), Some(StdDuration::ZERO));
        assert_eq!(parse_cert_duration("d"), None);
        assert_eq!(parse_cert_duration("ten days"), None);
    }
}
