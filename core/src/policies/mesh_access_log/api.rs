//! MeshAccessLog: logs the requests and connections proxies handle (outbound with `to`, inbound
//! with `from` or `rules`) to a file, a TCP collector or an OpenTelemetry collector.

use serde::Deserialize;
use serde_json::Value;

use crate::path::FieldPath;
use crate::policies::common::{
    BackendResourceRef, FromEntry, PolicyDoc, PolicySpec, RuleEntry, ToEntry, TopLevelOpts,
    check_entry_target_ref, check_otel_attribute_name, check_otel_endpoint_or_ref,
    check_rule_matches, check_top_level, top_level_kind,
};
use crate::string_enum;
use crate::target_ref::TargetRefKind as K;
use crate::validate::{Validate, Violations};

/// A MeshAccessLog document (the part after the envelope).
/// The `MeshAccessLog` document: its spec is all that is kind-specific.
pub type MeshAccessLogDoc = PolicyDoc<MeshAccessLogSpec>;

/// `to`, `from` and `rules`, the three sections of a targetRef policy.
pub type MeshAccessLogSpec = PolicySpec<Option<AccessLogConf>>;

pub type AccessLogTo = ToEntry<Option<AccessLogConf>>;

pub type AccessLogFrom = FromEntry<Option<AccessLogConf>>;

pub type AccessLogRule = RuleEntry<Option<AccessLogConf>>;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessLogConf {
    /// Required (an empty list disables logging).
    #[serde(default)]
    pub backends: Option<Vec<AccessLogBackend>>,
}

string_enum! {
    /// Where access logs are sent.
    pub enum AccessLogBackendType {
        Tcp => "Tcp",
        File => "File",
        OpenTelemetry => "OpenTelemetry",
    }
}

/// One log destination: exactly one of `tcp`, `file`, `openTelemetry`, matching `type` when set.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessLogBackend {
    /// Optional in documents: inferred from the one backend set.
    #[serde(default, rename = "type")]
    pub backend_type: Option<AccessLogBackendType>,
    #[serde(default)]
    pub tcp: Option<TcpBackend>,
    #[serde(default)]
    pub file: Option<FileBackend>,
    #[serde(default)]
    pub open_telemetry: Option<OtelBackend>,
}

impl AccessLogBackend {
    /// The backend's type: as written, or the one backend that is set.
    pub fn effective_type(&self) -> Option<AccessLogBackendType> {
        if let Some(t) = &self.backend_type {
            return Some(t.clone());
        }
        match (&self.tcp, &self.file, &self.open_telemetry) {
            (Some(_), None, None) => Some(AccessLogBackendType::Tcp),
            (None, Some(_), None) => Some(AccessLogBackendType::File),
            (None, None, Some(_)) => Some(AccessLogBackendType::OpenTelemetry),
            _ => None,
        }
    }
}

/// Sends log lines to a TCP collector (for example Logstash).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpBackend {
    #[serde(default)]
    pub format: Option<LogFormat>,
    /// `host:port` of the collector. Required.
    #[serde(default)]
    pub address: String,
}

/// Writes log lines to a file (`/dev/stdout` included).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileBackend {
    #[serde(default)]
    pub format: Option<LogFormat>,
    /// Required.
    #[serde(default)]
    pub path: String,
}

/// Sends logs to an OpenTelemetry collector, named by `backendRef` (or the deprecated
/// `endpoint`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OtelBackend {
    /// Extra attributes; values may hold Envoy command operators (`%START_TIME%`).
    #[serde(default)]
    pub attributes: Option<Vec<OtelAttribute>>,
    /// The log body: a string or an OTLP AnyValue (`kvlistValue`, `stringValue`...), free-form.
    #[serde(default)]
    pub body: Option<Value>,
    /// `host:port` of the collector (deprecated: use `backendRef`).
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub backend_ref: Option<BackendResourceRef>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OtelAttribute {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: String,
}

string_enum! {
    pub enum LogFormatType {
        Plain => "Plain",
        Json => "Json",
    }
}

/// The format of a log line: a plain template or JSON key/value pairs, with Envoy command
/// operators as placeholders.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogFormat {
    /// Optional in documents: inferred from `plain` or `json`.
    #[serde(default, rename = "type")]
    pub format_type: Option<LogFormatType>,
    #[serde(default)]
    pub plain: Option<String>,
    #[serde(default)]
    pub json: Option<Vec<JsonLogField>>,
    /// Leave out fields whose value is empty. Default false.
    #[serde(default)]
    pub omit_empty_values: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JsonLogField {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: String,
}

const TOP_KINDS: &[K] = &[
    K::Mesh,
    K::MeshSubset,
    K::MeshGateway,
    K::MeshService,
    K::MeshServiceSubset,
    K::Dataplane,
];
const TO_KINDS: &[K] = &[
    K::Mesh,
    K::MeshService,
    K::MeshExternalService,
    K::MeshMultiZoneService,
    K::MeshHTTPRoute,
];
const TO_KINDS_GATEWAY: &[K] = &[K::Mesh];
const FROM_KINDS: &[K] = &[K::Mesh];

impl Validate for MeshAccessLogSpec {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        let to = self.to();
        let from = self.from();
        let rules = self.rules();
        let inbound = !from.is_empty() || !rules.is_empty();
        check_top_level(
            &self.target_ref,
            &at.field("targetRef"),
            TOP_KINDS,
            TopLevelOpts {
                inbound,
                gateway_listener_tags: true,
            },
            v,
        );
        if !rules.is_empty() && (!to.is_empty() || !from.is_empty()) {
            v.add(at, "'to' and 'from' must be empty when 'rules' is defined");
        }
        if rules.is_empty() && to.is_empty() && from.is_empty() {
            v.add(
                at,
                "at least one of 'to', 'from' or 'rules' must be defined",
            );
        }
        let to_kinds = if top_level_kind(&self.target_ref) == K::MeshGateway {
            TO_KINDS_GATEWAY
        } else {
            TO_KINDS
        };
        for (i, item) in to.iter().enumerate() {
            let at = at.field("to").index(i);
            check_entry_target_ref(&item.target_ref, &at.field("targetRef"), to_kinds, v);
            check_conf(&item.default, &at.field("default"), v);
        }
        for (i, item) in from.iter().enumerate() {
            let at = at.field("from").index(i);
            check_entry_target_ref(&item.target_ref, &at.field("targetRef"), FROM_KINDS, v);
            check_conf(&item.default, &at.field("default"), v);
        }
        for (i, rule) in rules.iter().enumerate() {
            let at = at.field("rules").index(i);
            check_rule_matches(&rule.matches, &at.field("matches"), v);
            check_conf(&rule.default, &at.field("default"), v);
        }
    }
}

fn check_conf(conf: &Option<AccessLogConf>, at: &FieldPath, v: &mut Violations) {
    let Some(conf) = conf else {
        v.add(at, "must be defined");
        return;
    };
    match &conf.backends {
        None => v.add(&at.field("backends"), "must be defined"),
        Some(backends) => backends.validate(&at.field("backends"), v),
    }
}

impl Validate for AccessLogBackend {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        use AccessLogBackendType as T;
        if let Some(t) = &self.backend_type {
            t.validate(&at.field("type"), v);
        }
        let set: Vec<&str> = [
            self.tcp.as_ref().map(|_| "tcp"),
            self.file.as_ref().map(|_| "file"),
            self.open_telemetry.as_ref().map(|_| "openTelemetry"),
        ]
        .into_iter()
        .flatten()
        .collect();
        match &self.backend_type {
            None if set.len() != 1 => v.add(
                at,
                format!(
                    "must set exactly one of tcp, file, openTelemetry (set: {})",
                    if set.is_empty() {
                        "none".to_string()
                    } else {
                        set.join(", ")
                    }
                ),
            ),
            Some(t) if t.is_known() => {
                let wanted = match t {
                    T::Tcp => "tcp",
                    T::File => "file",
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
        if let Some(tcp) = &self.tcp {
            let at = at.field("tcp");
            tcp.format.validate(&at.field("format"), v);
            check_tcp_address(&tcp.address, &at.field("address"), v);
        }
        if let Some(file) = &self.file {
            let at = at.field("file");
            file.format.validate(&at.field("format"), v);
            check_file_path(&file.path, &at.field("path"), v);
        }
        if let Some(otel) = &self.open_telemetry {
            let at = at.field("openTelemetry");
            check_otel_endpoint_or_ref(otel.endpoint.as_deref(), otel.backend_ref.as_ref(), &at, v);
            for (i, attr) in otel.attributes.iter().flatten().enumerate() {
                check_otel_attribute_name(
                    &attr.key,
                    &at.field("attributes").index(i).field("key"),
                    v,
                );
            }
        }
    }
}

fn check_tcp_address(address: &str, at: &FieldPath, v: &mut Violations) {
    if address.is_empty() {
        v.add(at, "must be defined");
        return;
    }
    let rest = address.split_once("://").map_or(address, |(_, r)| r);
    let host_port = rest.split('/').next().unwrap_or_default();
    let bad_port = host_port
        .rsplit_once(':')
        .filter(|(h, _)| !h.is_empty() && !h.contains(':'))
        .is_some_and(|(_, p)| !p.parse::<u16>().is_ok_and(|p| p > 0));
    if address.chars().any(char::is_whitespace) || host_port.is_empty() || bad_port {
        v.add(
            at,
            format!("must be a valid address such as 127.0.0.1:5000 (got {address:?})"),
        );
    }
}

fn check_file_path(path: &str, at: &FieldPath, v: &mut Violations) {
    let windows_absolute =
        path.len() > 2 && path.as_bytes()[0].is_ascii_alphabetic() && &path[1..3] == ":\\";
    if path.is_empty() {
        v.add(at, "must be defined");
    } else if path.contains('\0') || !(path.starts_with('/') || windows_absolute) {
        v.add(
            at,
            format!("must be an absolute file path such as /tmp/access.log (got {path:?})"),
        );
    }
}

impl Validate for LogFormat {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        match &self.format_type {
            Some(t) => {
                t.validate(&at.field("type"), v);
                match t {
                    LogFormatType::Plain => {
                        if self.plain.is_none() {
                            v.add(&at.field("plain"), "must be defined when type is Plain");
                        }
                        if self.json.is_some() {
                            v.add(&at.field("json"), "must not be set when type is Plain");
                        }
                    }
                    LogFormatType::Json => {
                        if self.json.is_none() {
                            v.add(&at.field("json"), "must be defined when type is Json");
                        }
                        if self.plain.is_some() {
                            v.add(&at.field("plain"), "must not be set when type is Json");
                        }
                    }
                    LogFormatType::Unknown(_) => {}
                }
            }
            None => {
                if self.plain.is_some() == self.json.is_some() {
                    v.add(at, "must set exactly one of plain and json");
                }
            }
        }
        if let Some(plain) = &self.plain
            && plain.is_empty()
        {
            v.add(&at.field("plain"), "must not be empty");
        }
        if let Some(json) = &self.json {
            let at = at.field("json");
            if json.is_empty() {
                v.add(&at, "must not be empty");
            }
            for (i, field) in json.iter().enumerate() {
                let at = at.index(i);
                if field.key.is_empty() {
                    v.add(&at.field("key"), "must not be empty");
                }
                if field.value.is_empty() {
                    v.add(&at.field("value"), "must not be empty");
                }
                // Kuma builds the JSON line by pasting key and value between quotes.
                let line = format!("{{\"{}\": \"{}\"}}", field.key, field.value);
                if serde_json::from_str::<Value>(&line).is_err() {
                    v.add(
                        &at,
                        "key and value must fit in a JSON string: escape quotes and backslashes",
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::policies::common::test_support::{paths, violations};
    use serde_json::json;

    #[test]
    fn accepts_a_full_document() {
        let doc = json!({
            "type": "MeshAccessLog", "name": "full", "mesh": "default",
            "spec": {
                "targetRef": {"kind": "Dataplane", "labels": {"app": "web"}},
                "to": [{
                    "targetRef": {"kind": "MeshService", "name": "backend"},
                    "default": {"backends": [
                        {"type": "Tcp", "tcp": {"address": "127.0.0.1:5000",
                            "format": {"type": "Json", "omitEmptyValues": true,
                                "json": [{"key": "start", "value": "%START_TIME%"}]}}},
                        {"file": {"path": "/dev/stdout", "format": {"plain": "[%START_TIME%]"}}},
                        {"type": "OpenTelemetry", "openTelemetry": {
                            "backendRef": {"kind": "MeshOpenTelemetryBackend", "labels": {"app": "otel"}},
                            "body": {"kvlistValue": {"values": [{"key": "mesh", "value": {"stringValue": "%KUMA_MESH%"}}]}},
                            "attributes": [{"key": "http.start_time", "value": "%START_TIME%"}]}},
                        {"openTelemetry": {"endpoint": "otel-collector:4317"}}
                    ]}
                }]
            }
        });
        assert_eq!(violations(doc), Vec::<(String, String)>::new());
        let rules = json!({
            "type": "MeshAccessLog", "name": "in", "mesh": "default",
            "spec": {"targetRef": {"kind": "Dataplane", "labels": {"app": "web"}, "sectionName": "http"},
                "rules": [{"matches": [{"spiffeID": {"type": "Prefix", "value": "spiffe://default/ns/x"}}],
                    "default": {"backends": [{"type": "File", "file": {"path": "/tmp/in.log"}}]}}]}
        });
        assert_eq!(violations(rules), Vec::<(String, String)>::new());
    }

    #[test]
    fn reports_every_violation_with_its_path() {
        let doc = json!({
            "type": "MeshAccessLog", "name": "bad", "mesh": "default",
            "spec": {
                "targetRef": {"kind": "MeshHTTPRoute", "name": "r"},
                "to": [{
                    "targetRef": {"kind": "Dataplane"},
                    "default": {"backends": [
                        {"type": "File", "tcp": {"address": "127.0.0.1:5000"}},
                        {"file": {"path": "relative.log"}, "tcp": {"address": "x:1"}},
                        {"openTelemetry": {"endpoint": "http://collector:4317/v1",
                            "attributes": [{"key": "otel.bad", "value": "x"}]}},
                        {"file": {"path": "/tmp/a", "format": {"type": "Json", "json": [], "bogus": 1}}}
                    ]}
                }],
                "from": [{"targetRef": {"kind": "MeshService", "name": "x"}}]
            }
        });
        let got = paths(doc);
        let want = [
            "spec.to[0].default.backends[3].file.format.bogus",
            "spec.targetRef.kind",
            "spec.to[0].targetRef.kind",
            "spec.to[0].default.backends[0].file",
            "spec.to[0].default.backends[0].tcp",
            "spec.to[0].default.backends[1]",
            "spec.to[0].default.backends[1].file.path",
            "spec.to[0].default.backends[2].openTelemetry.endpoint",
            "spec.to[0].default.backends[2].openTelemetry.attributes[0].key",
            "spec.to[0].default.backends[3].file.format.json",
            "spec.from[0].targetRef.kind",
            "spec.from[0].default",
        ];
        for w in want {
            assert!(got.contains(&w.to_string()), "missing {w} in {got:?}");
        }
        assert_eq!(got.len(), want.len(), "{got:?}");
    }

    #[test]
    fn requires_a_section_and_refuses_rules_with_to() {
        let doc = json!({
            "type": "MeshAccessLog", "name": "bad", "mesh": "default",
            "spec": {"targetRef": {"kind": "Mesh"}}
        });
        let got = violations(doc);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, "spec");
        let doc = json!({
            "type": "MeshAccessLog", "name": "bad", "mesh": "default",
            "spec": {
                "to": [{"targetRef": {"kind": "Mesh"}, "default": {}}],
                "rules": [{"matches": [{"sni": {"type": "Exact", "value": "Not_DNS"}}],
                    "default": {"backends": [{"type": "Tcp", "tcp": {"address": ""}}]}}]
            }
        });
        let got = paths(doc);
        assert_eq!(
            got,
            [
                "spec",
                "spec.to[0].default.backends",
                "spec.rules[0].matches[0].sni.value",
                "spec.rules[0].default.backends[0].tcp.address",
            ]
        );
    }

    #[test]
    fn section_name_on_dataplane_needs_inbound_traffic() {
        let doc = json!({
            "type": "MeshAccessLog", "name": "bad", "mesh": "default",
            "spec": {
                "targetRef": {"kind": "Dataplane", "labels": {"app": "a"}, "sectionName": "http"},
                "to": [{"targetRef": {"kind": "Mesh"},
                    "default": {"backends": [{"type": "Otel", "file": {"path": "/tmp/x"}}]}}]
            }
        });
        let got = paths(doc);
        assert_eq!(
            got,
            [
                "spec.targetRef.sectionName",
                "spec.to[0].default.backends[0].type"
            ]
        );
    }
}
