//! MeshMetric: exposes the metrics of the selected proxies (and of their applications) to
//! Prometheus or pushes them to an OpenTelemetry collector, with a choice of metric profiles.

use serde::Deserialize;

use crate::path::FieldPath;
use crate::policies::common::{
    BackendResourceRef, PolicyDoc, TopLevelOpts, check_otel_endpoint_or_ref, check_top_level,
};
use crate::string_enum;
use crate::target_ref::{TargetRef, TargetRefKind as K};
use crate::types::Duration;
use crate::validate::{Validate, Violations, check_port};

/// A MeshMetric document (the part after the envelope).
/// The `MeshMetric` document: its spec is all that is kind-specific.
pub type MeshMetricDoc = PolicyDoc<MeshMetricSpec>;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshMetricSpec {
    /// The proxies configured; the whole mesh when left out.
    #[serde(default)]
    pub target_ref: Option<TargetRef>,
    #[serde(default)]
    pub default: Option<MetricConf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricConf {
    /// Which of the proxy's own metrics are exposed.
    #[serde(default)]
    pub sidecar: Option<SidecarMetrics>,
    /// Application endpoints whose metrics the proxy scrapes and merges into its own.
    #[serde(default)]
    pub applications: Option<Vec<Application>>,
    #[serde(default)]
    pub backends: Option<Vec<MetricBackend>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SidecarMetrics {
    #[serde(default)]
    pub profiles: Option<Profiles>,
    /// Also expose metrics that were never updated. Default false.
    #[serde(default)]
    pub include_unused: Option<bool>,
}

/// Predefined metric sets plus include/exclude filters on metric names.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profiles {
    #[serde(default)]
    pub append_profiles: Option<Vec<Profile>>,
    #[serde(default)]
    pub exclude: Option<Vec<MetricSelector>>,
    #[serde(default)]
    pub include: Option<Vec<MetricSelector>>,
}

string_enum! {
    pub enum ProfileName {
        All => "All",
        Basic => "Basic",
        None => "None",
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    #[serde(default)]
    pub name: Option<ProfileName>,
}

string_enum! {
    pub enum SelectorType {
        Prefix => "Prefix",
        Regex => "Regex",
        Exact => "Exact",
        Contains => "Contains",
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricSelector {
    #[serde(default, rename = "type")]
    pub selector_type: Option<SelectorType>,
    #[serde(default, rename = "match")]
    pub match_value: String,
}

/// An application metrics endpoint scraped by the proxy.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Application {
    /// Identifies the application in the merged metrics.
    #[serde(default)]
    pub name: Option<String>,
    /// Default `/metrics`.
    #[serde(default)]
    pub path: Option<String>,
    /// Default: the proxy's inbound address.
    #[serde(default)]
    pub address: Option<String>,
    /// Required.
    #[serde(default)]
    pub port: Option<i64>,
}

string_enum! {
    pub enum MetricBackendType {
        Prometheus => "Prometheus",
        OpenTelemetry => "OpenTelemetry",
    }
}

/// Exactly one of `prometheus` and `openTelemetry`, matching `type` when set.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricBackend {
    /// Optional in documents: inferred from the one backend set.
    #[serde(default, rename = "type")]
    pub backend_type: Option<MetricBackendType>,
    #[serde(default)]
    pub prometheus: Option<PrometheusBackend>,
    #[serde(default)]
    pub open_telemetry: Option<OtelMetricBackend>,
}

/// An endpoint Prometheus scrapes.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusBackend {
    /// Matches the `client_id` a Prometheus server sets in its Kuma service discovery.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Default 5670.
    #[serde(default)]
    pub port: Option<i64>,
    /// Default `/metrics`.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub tls: Option<PrometheusTls>,
}

string_enum! {
    pub enum PrometheusTlsMode {
        Disabled => "Disabled",
        ProvidedTls => "ProvidedTLS",
        ActiveMtlsBackend => "ActiveMTLSBackend",
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusTls {
    /// Default `Disabled`.
    #[serde(default)]
    pub mode: Option<PrometheusTlsMode>,
}

/// Pushes metrics to an OpenTelemetry collector named by `backendRef` (or the deprecated
/// `endpoint`, `host:port`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OtelMetricBackend {
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub backend_ref: Option<BackendResourceRef>,
    /// How often metrics are pushed. Default 1m.
    #[serde(default)]
    pub refresh_interval: Option<Duration>,
}

const TOP_KINDS: &[K] = &[
    K::Mesh,
    K::MeshSubset,
    K::MeshService,
    K::MeshServiceSubset,
    K::MeshGateway,
    K::Dataplane,
];

impl Validate for MeshMetricSpec {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        check_top_level(
            &self.target_ref,
            &at.field("targetRef"),
            TOP_KINDS,
            TopLevelOpts {
                inbound: false,
                gateway_listener_tags: true,
            },
            v,
        );
        match &self.default {
            Some(default) => default.validate(&at.field("default"), v),
            None => v.add(&at.field("default"), "must be defined"),
        }
    }
}

impl Validate for MetricConf {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        if let Some(profiles) = self.sidecar.as_ref().and_then(|s| s.profiles.as_ref()) {
            let at = at.field("sidecar").field("profiles");
            for (i, p) in profiles.append_profiles.iter().flatten().enumerate() {
                let at = at.field("appendProfiles").index(i).field("name");
                match &p.name {
                    Some(n) => n.validate(&at, v),
                    None => v.add(&at, "must be defined"),
                }
            }
            profiles.exclude.validate(&at.field("exclude"), v);
            profiles.include.validate(&at.field("include"), v);
        }
        for (i, app) in self.applications.iter().flatten().enumerate() {
            let at = at.field("applications").index(i);
            match app.port {
                Some(p) => check_port(p, &at.field("port"), v),
                None => v.add(&at.field("port"), "must be defined"),
            }
            if let Some(path) = &app.path
                && !path.starts_with('/')
            {
                v.add(&at.field("path"), "must start with '/'");
            }
        }
        self.backends.validate(&at.field("backends"), v);
    }
}

impl Validate for MetricSelector {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        match &self.selector_type {
            Some(t) => t.validate(&at.field("type"), v),
            None => v.add(&at.field("type"), "must be defined"),
        }
        if self.match_value.is_empty() {
            v.add(&at.field("match"), "must not be empty");
        } else if self.selector_type == Some(SelectorType::Regex)
            && let Err(why) = check_regex_syntax(&self.match_value)
        {
            v.add(&at.field("match"), format!("invalid regex: {why}"));
        }
    }
}

/// Checks an address written `host:port` (IPv6 hosts in brackets), with a port in 1-65535.
fn check_host_port(s: &str, at: &FieldPath, v: &mut Violations) {
    let split = if let Some(rest) = s.strip_prefix('[') {
        rest.split_once(']')
            .and_then(|(h, tail)| tail.strip_prefix(':').map(|p| (h, p)))
    } else {
        s.rsplit_once(':').filter(|(h, _)| !h.contains(':'))
    };
    match split {
        Some((host, port)) if !host.is_empty() => match port.parse::<i64>() {
            Ok(p) if port.chars().all(|c| c.is_ascii_digit()) => check_port(p, at, v),
            _ => v.add(
                at,
                format!("must be in host:port format: port {port:?} is not a number"),
            ),
        },
        _ => v.add(
            at,
            format!("must be in host:port format, e.g. otel-collector:4317 (got {s:?})"),
        ),
    }
}

/// A light syntax check of a regular expression: brackets balance and escapes are complete.
fn check_regex_syntax(re: &str) -> Result<(), &'static str> {
    let mut stack: Vec<char> = Vec::new();
    let mut chars = re.chars();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.next().is_none() => {
                return Err("trailing backslash");
            }
            ']' if in_class => in_class = false,
            _ if in_class => {}
            '[' => in_class = true,
            '(' | '{' => stack.push(c),
            ')' if stack.pop() != Some('(') => {
                return Err("unbalanced parenthesis");
            }
            '}' if stack.pop() != Some('{') => {
                return Err("unbalanced brace");
            }
            _ => {}
        }
    }
    if in_class {
        return Err("missing closing ]");
    }
    if !stack.is_empty() {
        return Err("missing closing parenthesis or brace");
    }
    Ok(())
}

impl Validate for MetricBackend {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        if let Some(t) = &self.backend_type {
            t.validate(&at.field("type"), v);
        }
        let set: Vec<&str> = [
            self.prometheus.as_ref().map(|_| "prometheus"),
            self.open_telemetry.as_ref().map(|_| "openTelemetry"),
        ]
        .into_iter()
        .flatten()
        .collect();
        match &self.backend_type {
            None if set.len() != 1 => {
                v.add(at, "must set exactly one of prometheus and openTelemetry")
            }
            Some(t) if t.is_known() => {
                let wanted = match t {
                    MetricBackendType::Prometheus => "prometheus",
                    _ => "openTelemetry",
                };
                if !set.contains(&wanted) {
                    v.add(
                        &at.field(wanted),
                        format!("must be defined when type is {}", t.as_str()),
                    );
                }
                for other in set.iter().filter(|s| **s != wanted) {
                    v.add(
                        &at.field(other),
                        format!("must not be set when type is {}", t.as_str()),
                    );
                }
            }
            _ => {}
        }
        if let Some(p) = &self.prometheus {
            let at = at.field("prometheus");
            if let Some(port) = p.port {
                check_port(port, &at.field("port"), v);
            }
            if let Some(path) = &p.path
                && !path.starts_with('/')
            {
                v.add(&at.field("path"), "must start with '/'");
            }
            if let Some(tls) = &p.tls {
                tls.mode.validate(&at.field("tls").field("mode"), v);
            }
        }
        if let Some(o) = &self.open_telemetry {
            let at = at.field("openTelemetry");
            check_otel_endpoint_or_ref(o.endpoint.as_deref(), o.backend_ref.as_ref(), &at, v);
            // MeshMetric has always required host:port (the port is not defaulted).
            if let (Some(e), None) = (o.endpoint.as_deref(), &o.backend_ref)
                && !e.is_empty()
                && !e.contains(['/', '?', '#'])
            {
                check_host_port(e, &at.field("endpoint"), v);
            }
            if let Some(d) = &o.refresh_interval {
                let at = at.field("refreshInterval");
                d.validate(&at, v);
                if d.as_std().is_some_and(|d| d.is_zero()) {
                    v.add(&at, "must be greater than 0");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::policies::common::test_support::paths;
    use serde_json::json;

    #[test]
    fn accepts_a_full_document() {
        let doc = json!({
            "type": "MeshMetric", "name": "full", "mesh": "default",
            "spec": {
                "targetRef": {"kind": "MeshGateway", "name": "edge", "tags": {"port": "8080"}},
                "default": {
                    "sidecar": {"includeUnused": true, "profiles": {
                        "appendProfiles": [{"name": "Basic"}],
                        "exclude": [{"type": "Regex", "match": "envoy_cluster_(a|b)_.*"}],
                        "include": [{"type": "Prefix", "match": "envoy_http"},
                                    {"type": "Contains", "match": "rq"}]}},
                    "applications": [{"name": "app", "path": "/metrics/prometheus",
                        "address": "127.0.0.1", "port": 8888}],
                    "backends": [
                        {"type": "Prometheus", "prometheus": {"clientId": "main", "port": 5670,
                            "path": "/metrics", "tls": {"mode": "ActiveMTLSBackend"}}},
                        {"type": "OpenTelemetry", "openTelemetry": {"endpoint": "otel:4317",
                            "refreshInterval": "30s"}},
                        {"openTelemetry": {"backendRef": {"kind": "MeshOpenTelemetryBackend",
                            "labels": {"x": "y"}}}}
                    ]
                }
            }
        });
        assert_eq!(paths(doc), Vec::<String>::new());
    }

    #[test]
    fn reports_every_violation_with_its_path() {
        let doc = json!({
            "type": "MeshMetric", "name": "bad", "mesh": "default",
            "spec": {
                "targetRef": {"kind": "MeshHTTPRoute", "name": "r"},
                "default": {
                    "sidecar": {"profiles": {
                        "appendProfiles": [{"name": "Everything"}],
                        "exclude": [{"type": "Regex", "match": "envoy_(a"}],
                        "include": [{"type": "Suffix", "match": "x"}]}},
                    "applications": [{"port": 70000}, {"path": "/m"}],
                    "backends": [
                        {"type": "Prometheus", "prometheus": {"port": 0, "tls": {"mode": "On"}}},
                        {"type": "OpenTelemetry", "openTelemetry": {"endpoint": "otel",
                            "refreshInterval": "soon"}}
                    ]
                }
            }
        });
        assert_eq!(
            paths(doc),
            [
                "spec.targetRef.kind",
                "spec.default.sidecar.profiles.appendProfiles[0].name",
                "spec.default.sidecar.profiles.exclude[0].match",
                "spec.default.sidecar.profiles.include[0].type",
                "spec.default.applications[0].port",
                "spec.default.applications[1].port",
                "spec.default.backends[0].prometheus.port",
                "spec.default.backends[0].prometheus.tls.mode",
                "spec.default.backends[1].openTelemetry.endpoint",
                "spec.default.backends[1].openTelemetry.refreshInterval",
            ]
        );
    }

    #[test]
    fn refuses_unknown_fields_and_mismatched_backends() {
        let doc = json!({
            "type": "MeshMetric", "name": "bad", "mesh": "default",
            "spec": {
                "targetRef": {"kind": "Dataplane", "sectionName": "main"},
                "default": {
                    "backends": [{"type": "Prometheus", "openTelemetry": {"endpoint": "a:1"}},
                                 {"openTelemetry": {}}],
                    "sidecars": {}
                }
            }
        });
        assert_eq!(
            paths(doc),
            [
                "spec.default.sidecars",
                "spec.targetRef.sectionName",
                "spec.default.backends[0].prometheus",
                "spec.default.backends[0].openTelemetry",
                "spec.default.backends[1].openTelemetry",
            ]
        );
    }
}
