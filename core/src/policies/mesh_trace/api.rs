//! MeshTrace: sends request traces from the selected proxies to a tracing backend (Zipkin,
//! Datadog or OpenTelemetry), with sampling rates and custom span tags.

use serde::Deserialize;

use crate::path::FieldPath;
use crate::policies::common::{
    BackendResourceRef, IntOrString, PolicyDoc, TopLevelOpts, check_otel_endpoint_or_ref,
    check_percentage, check_top_level,
};
use crate::string_enum;
use crate::target_ref::{TargetRef, TargetRefKind as K};
use crate::validate::{Validate, Violations, check_port};

/// A MeshTrace document (the part after the envelope).
/// The `MeshTrace` document: its spec is all that is kind-specific.
pub type MeshTraceDoc = PolicyDoc<MeshTraceSpec>;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshTraceSpec {
    /// The proxies configured; the whole mesh when left out.
    #[serde(default)]
    pub target_ref: Option<TargetRef>,
    /// Required.
    #[serde(default)]
    pub default: Option<TraceConf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceConf {
    /// Required; zero or one backend (an empty list disables tracing).
    #[serde(default)]
    pub backends: Option<Vec<TraceBackend>>,
    #[serde(default)]
    pub sampling: Option<Sampling>,
    /// Tags added to every span, from a literal or a request header.
    #[serde(default)]
    pub tags: Option<Vec<TraceTag>>,
}

string_enum! {
    pub enum TraceBackendType {
        Zipkin => "Zipkin",
        Datadog => "Datadog",
        OpenTelemetry => "OpenTelemetry",
    }
}

/// Exactly one of `zipkin`, `datadog`, `openTelemetry`, matching `type` when set.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceBackend {
    /// Optional in documents: inferred from the one backend set.
    #[serde(default, rename = "type")]
    pub backend_type: Option<TraceBackendType>,
    #[serde(default)]
    pub zipkin: Option<ZipkinBackend>,
    #[serde(default)]
    pub datadog: Option<DatadogBackend>,
    #[serde(default)]
    pub open_telemetry: Option<OtelTraceBackend>,
}

string_enum! {
    /// The Zipkin collector API flavour.
    pub enum ZipkinApiVersion {
        HttpJson => "httpJson",
        HttpProto => "httpProto",
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZipkinBackend {
    /// Collector URL, e.g. `http://jaeger-collector:9411/api/v2/spans`. Required.
    #[serde(default)]
    pub url: String,
    /// Generate 128-bit trace ids. Default false.
    #[serde(default, rename = "traceId128bit")]
    pub trace_id_128bit: Option<bool>,
    /// Default `httpJson`.
    #[serde(default)]
    pub api_version: Option<ZipkinApiVersion>,
    /// Client and server spans share one span context. Default true.
    #[serde(default)]
    pub shared_span_context: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatadogBackend {
    /// Agent address, `http://host:port` (no path). Required.
    #[serde(default)]
    pub url: String,
    /// Name services per direction and destination (`backend_INBOUND`...). Default false.
    #[serde(default)]
    pub split_service: Option<bool>,
}

/// An OpenTelemetry collector, named by `backendRef` (or the deprecated `endpoint`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OtelTraceBackend {
    /// `host:port`; the port defaults to 4317.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub backend_ref: Option<BackendResourceRef>,
}

/// Sampling percentages (0-100, integers or decimal strings).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sampling {
    /// Upper limit on everything traced. Default 100.
    #[serde(default)]
    pub overall: Option<IntOrString>,
    /// Requests carrying `x-client-trace-id`. Default 100.
    #[serde(default)]
    pub client: Option<IntOrString>,
    /// Other requests. Default 100.
    #[serde(default)]
    pub random: Option<IntOrString>,
}

/// A span tag: exactly one of `literal` and `header`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceTag {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub literal: Option<String>,
    #[serde(default)]
    pub header: Option<HeaderTag>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderTag {
    #[serde(default)]
    pub name: String,
    /// Used when the request lacks the header.
    #[serde(default)]
    pub default: Option<String>,
}

const TOP_KINDS: &[K] = &[
    K::Mesh,
    K::MeshSubset,
    K::MeshGateway,
    K::MeshService,
    K::MeshServiceSubset,
    K::Dataplane,
];

impl Validate for MeshTraceSpec {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        check_top_level(
            &self.target_ref,
            &at.field("targetRef"),
            TOP_KINDS,
            TopLevelOpts::default(),
            v,
        );
        match &self.default {
            Some(d) => d.validate(&at.field("default"), v),
            None => v.add(&at.field("default"), "must be defined"),
        }
    }
}

impl Validate for TraceConf {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        let backends_at = at.field("backends");
        match &self.backends {
            None => v.add(&backends_at, "must be defined"),
            Some(b) if b.len() > 1 => v.add(
                &backends_at,
                format!("must have zero or one backend (got {})", b.len()),
            ),
            Some(b) => b.validate(&backends_at, v),
        }
        for (i, tag) in self.tags.iter().flatten().enumerate() {
            let at = at.field("tags").index(i);
            if tag.name.is_empty() {
                v.add(&at.field("name"), "must not be empty");
            }
            if tag.header.is_some() == tag.literal.is_some() {
                v.add(&at, "must set exactly one of header and literal");
            }
            if let Some(h) = &tag.header
                && h.name.is_empty()
            {
                v.add(&at.field("header").field("name"), "must not be empty");
            }
        }
        if let Some(s) = &self.sampling {
            let at = at.field("sampling");
            for (name, value) in [
                ("overall", &s.overall),
                ("client", &s.client),
                ("random", &s.random),
            ] {
                if let Some(p) = value {
                    check_percentage(p, true, &at.field(name), v);
                }
            }
        }
    }
}

impl Validate for TraceBackend {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        use TraceBackendType as T;
        if let Some(t) = &self.backend_type {
            t.validate(&at.field("type"), v);
        }
        let set: Vec<&str> = [
            self.zipkin.as_ref().map(|_| "zipkin"),
            self.datadog.as_ref().map(|_| "datadog"),
            self.open_telemetry.as_ref().map(|_| "openTelemetry"),
        ]
        .into_iter()
        .flatten()
        .collect();
        match &self.backend_type {
            None if set.len() != 1 => {
                v.add(at, "must set exactly one of zipkin, datadog, openTelemetry")
            }
            Some(t) if t.is_known() => {
                let wanted = match t {
                    T::Zipkin => "zipkin",
                    T::Datadog => "datadog",
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
        if let Some(z) = &self.zipkin {
            let at = at.field("zipkin");
            if z.url.is_empty() {
                v.add(&at.field("url"), "must not be empty");
            } else if parse_url(&z.url).is_none() {
                v.add(
                    &at.field("url"),
                    format!(
                        "must be a valid URL such as http://zipkin:9411/api/v2/spans (got {:?})",
                        z.url
                    ),
                );
            }
            z.api_version.validate(&at.field("apiVersion"), v);
        }
        if let Some(d) = &self.datadog {
            check_datadog_url(&d.url, &at.field("datadog").field("url"), v);
        }
        if let Some(o) = &self.open_telemetry {
            check_otel_endpoint_or_ref(
                o.endpoint.as_deref(),
                o.backend_ref.as_ref(),
                &at.field("openTelemetry"),
                v,
            );
        }
    }
}

/// The parts of an absolute URL the checks need.
struct UrlParts<'a> {
    scheme: &'a str,
    has_user: bool,
    port: Option<&'a str>,
    /// Path, query and fragment, as written.
    rest: &'a str,
}

fn parse_url(url: &str) -> Option<UrlParts<'_>> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let (scheme, after) = url.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return None;
    }
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    let (has_user, host_port) = match authority.rsplit_once('@') {
        Some((_, hp)) => (true, hp),
        None => (false, authority),
    };
    let (host, port) = if let Some(inner) = host_port.strip_prefix('[') {
        let (h, tail) = inner.split_once(']')?;
        (h, tail.strip_prefix(':'))
    } else {
        match host_port.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    Some(UrlParts {
        scheme,
        has_user,
        port,
        rest,
    })
}

fn check_datadog_url(url: &str, at: &FieldPath, v: &mut Violations) {
    let Some(u) = parse_url(url) else {
        v.add(
            at,
            format!("must be a valid URL such as http://datadog-agent:8126 (got {url:?})"),
        );
        return;
    };
    if u.scheme != "http" {
        v.add(at, "scheme must be http");
    }
    match u.port {
        None | Some("") => v.add(at, "port must be defined"),
        Some(p) => match p.parse::<i64>() {
            Ok(n) if p.chars().all(|c| c.is_ascii_digit()) => check_port(n, at, v),
            _ => v.add(at, "port must be a number in the range 1-65535"),
        },
    }
    if u.has_user {
        v.add(at, "user must not be defined");
    }
    if !u.rest.is_empty() && u.rest != "/" {
        v.add(at, "path, query and fragment must not be defined");
    }
}

#[cfg(test)]
mod tests {
    use crate::policies::common::test_support::paths;
    use serde_json::json;

    #[test]
    fn accepts_a_full_document() {
        for backend in [
            json!({"type": "Zipkin", "zipkin": {"url": "http://jaeger:9411/api/v2/spans",
                "traceId128bit": true, "apiVersion": "httpProto", "sharedSpanContext": false}}),
            json!({"datadog": {"url": "http://127.0.0.1:8126", "splitService": true}}),
            json!({"type": "OpenTelemetry", "openTelemetry": {"backendRef":
                {"kind": "MeshOpenTelemetryBackend", "labels": {"a": "b"}}}}),
            json!({"openTelemetry": {"endpoint": "otel-collector.com:4317"}}),
        ] {
            let doc = json!({
                "type": "MeshTrace", "name": "full", "mesh": "default",
                "spec": {
                    "targetRef": {"kind": "MeshGateway", "name": "edge"},
                    "default": {
                        "backends": [backend],
                        "sampling": {"overall": 80, "client": "40.5", "random": 0},
                        "tags": [{"name": "team", "literal": "core"},
                                 {"name": "env", "header": {"name": "x-env", "default": "prod"}}]
                    }
                }
            });
            assert_eq!(paths(doc), Vec::<String>::new());
        }
    }

    #[test]
    fn reports_every_violation_with_its_path() {
        let doc = json!({
            "type": "MeshTrace", "name": "bad", "mesh": "default",
            "spec": {
                "targetRef": {"kind": "MeshHTTPRoute", "name": "r"},
                "default": {
                    "backends": [{"type": "Datadog", "datadog": {"url": "https://agent/path"}}],
                    "sampling": {"overall": 101, "client": "lots", "random": true},
                    "tags": [{"name": "", "literal": "x", "header": {"name": "h"}}],
                    "extra": true
                }
            }
        });
        let got = paths(doc);
        assert_eq!(
            got,
            [
                "spec.default.extra",
                "spec.targetRef.kind",
                "spec.default.backends[0].datadog.url",
                "spec.default.backends[0].datadog.url",
                "spec.default.backends[0].datadog.url",
                "spec.default.tags[0].name",
                "spec.default.tags[0]",
                "spec.default.sampling.overall",
                "spec.default.sampling.client",
                "spec.default.sampling.random",
            ]
        );
    }

    #[test]
    fn checks_backend_count_and_one_of() {
        let doc = json!({
            "type": "MeshTrace", "name": "bad", "mesh": "default",
            "spec": {"default": {"backends": [
                {"zipkin": {"url": "http://a:1"}}, {"zipkin": {"url": "http://b:1"}}]}}
        });
        assert_eq!(paths(doc), ["spec.default.backends"]);
        let doc = json!({
            "type": "MeshTrace", "name": "bad", "mesh": "default",
            "spec": {"targetRef": {"kind": "Dataplane", "sectionName": "http"},
                "default": {"backends": [{"zipkin": {"url": "not a url", "apiVersion": "v9"},
                    "openTelemetry": {}}]}}
        });
        assert_eq!(
            paths(doc),
            [
                "spec.targetRef.sectionName",
                "spec.default.backends[0]",
                "spec.default.backends[0].zipkin.url",
                "spec.default.backends[0].zipkin.apiVersion",
                "spec.default.backends[0].openTelemetry",
            ]
        );
        let doc = json!({"type": "MeshTrace", "name": "bad", "mesh": "default", "spec": {}});
        assert_eq!(paths(doc), ["spec.default"]);
    }
}
