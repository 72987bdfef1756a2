//! `MeshService`: a service made of the data plane proxies a selector picks, with its ports; also
//! the application `Protocol` and the port-number-or-name type used across kinds.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use crate::kinds::hostname_generator::{Address, HostnameGeneratorStatus, LabelSelector};
use crate::path::FieldPath;
use crate::string_enum;
use crate::validate::{Validate, Violations, check_non_empty, check_port};

string_enum! {
    /// The application protocol of a port (`kuma.io/protocol`, `appProtocol`).
    pub enum Protocol {
        Tcp => "tcp",
        Http => "http",
        Http2 => "http2",
        Grpc => "grpc",
        Kafka => "kafka",
    }
}

impl Protocol {
    /// HTTP/1.1, HTTP/2 or gRPC: traffic an HTTP connection manager can handle.
    pub fn is_http_based(&self) -> bool {
        matches!(self, Protocol::Http | Protocol::Http2 | Protocol::Grpc)
    }
}

string_enum! {
    pub enum MeshServiceState {
        Available => "Available",
        Unavailable => "Unavailable",
    }
}

string_enum! {
    pub enum IdentityType {
        ServiceTag => "ServiceTag",
        SpiffeId => "SpiffeID",
    }
}

string_enum! {
    pub enum TlsReadiness {
        Ready => "Ready",
        NotReady => "NotReady",
    }
}

/// A port given by number or by name (Kubernetes' int-or-string). Any scalar deserializes so a
/// wrong value is reported by `validate` with the other violations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortOrName {
    Number(i64),
    Name(String),
    /// Neither an integer nor a string, kept for the message.
    Invalid(String),
}

impl<'de> Deserialize<'de> for PortOrName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match serde_json::Value::deserialize(d)? {
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => PortOrName::Number(i),
                None => PortOrName::Invalid(n.to_string()),
            },
            serde_json::Value::String(s) => PortOrName::Name(s),
            other => PortOrName::Invalid(other.to_string()),
        })
    }
}

impl Validate for PortOrName {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        match self {
            PortOrName::Number(n) => check_port(*n, at, v),
            PortOrName::Name(s) => check_non_empty(s, at, v),
            PortOrName::Invalid(s) => v.add(
                at,
                format!("must be a port number or a port name (got {s})"),
            ),
        }
    }
}

/// The kind-specific fields of a MeshService.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshServiceDoc {
    #[serde(default)]
    pub spec: Option<MeshServiceSpec>,
    /// Written by the control plane.
    #[serde(default)]
    pub status: Option<MeshServiceStatus>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshServiceSpec {
    /// `Available` when at least one endpoint is healthy; used across zones.
    #[serde(default)]
    pub state: Option<MeshServiceState>,
    #[serde(default)]
    pub selector: Option<MeshServiceSelector>,
    #[serde(default)]
    pub ports: Vec<MeshServicePort>,
    #[serde(default)]
    pub identities: Option<Vec<MeshServiceIdentity>>,
}

/// Which data plane proxies make the service: at most one of the three.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshServiceSelector {
    /// Inbound tags every selected proxy carries.
    #[serde(default)]
    pub dataplane_tags: Option<BTreeMap<String, String>>,
    /// One Dataplane by name.
    #[serde(default)]
    pub dataplane_ref: Option<DataplaneRef>,
    /// Dataplane labels.
    #[serde(default)]
    pub dataplane_labels: Option<LabelSelector>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataplaneRef {
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshServicePort {
    #[serde(default)]
    pub name: Option<String>,
    /// The port clients use.
    #[serde(default)]
    pub port: Option<i64>,
    /// The inbound port number, or an inbound's name.
    #[serde(default)]
    pub target_port: Option<PortOrName>,
    /// Defaults to tcp.
    #[serde(default)]
    pub app_protocol: Option<Protocol>,
}

impl MeshServicePort {
    pub fn protocol(&self) -> Protocol {
        self.app_protocol.clone().unwrap_or(Protocol::Tcp)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshServiceIdentity {
    #[serde(rename = "type", default)]
    pub type_: Option<IdentityType>,
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshServiceStatus {
    #[serde(default)]
    pub addresses: Vec<Address>,
    #[serde(default)]
    pub vips: Vec<Vip>,
    #[serde(default)]
    pub tls: Option<TlsStatus>,
    #[serde(default)]
    pub hostname_generators: Vec<HostnameGeneratorStatus>,
    #[serde(default)]
    pub dataplane_proxies: Option<DataplaneProxies>,
}

/// A virtual IP allocated to a service.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Vip {
    #[serde(default)]
    pub ip: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsStatus {
    #[serde(default)]
    pub status: Option<TlsReadiness>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataplaneProxies {
    #[serde(default)]
    pub connected: Option<u64>,
    #[serde(default)]
    pub healthy: Option<u64>,
    #[serde(default)]
    pub total: Option<u64>,
}

/// Checks a list of service ports: each port number, name and protocol.
pub(crate) fn check_port_entry(
    name: &Option<String>,
    port: Option<i64>,
    protocol: &Option<Protocol>,
    at: &FieldPath,
    v: &mut Violations,
) {
    if let Some(n) = name {
        check_non_empty(n, &at.field("name"), v);
    }
    match port {
        Some(p) => check_port(p, &at.field("port"), v),
        None => v.add(&at.field("port"), "must be defined"),
    }
    protocol.validate(&at.field("appProtocol"), v);
}

impl Validate for MeshServiceDoc {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        let at = at.field("spec");
        let Some(spec) = &self.spec else {
            v.add(&at, "must be defined");
            return;
        };
        spec.state.validate(&at.field("state"), v);
        if let Some(sel) = &spec.selector {
            let sel_at = at.field("selector");
            let set = [
                sel.dataplane_tags.is_some(),
                sel.dataplane_ref.is_some(),
                sel.dataplane_labels.is_some(),
            ]
            .iter()
            .filter(|x| **x)
            .count();
            if set > 1 {
                v.add(
                    &sel_at,
                    "must specify only one of: dataplaneTags, dataplaneRef, dataplaneLabels",
                );
            }
            if let Some(r) = &sel.dataplane_ref {
                let name_at = sel_at.field("dataplaneRef").field("name");
                match &r.name {
                    Some(n) => check_non_empty(n, &name_at, v),
                    None => v.add(&name_at, "must be defined"),
                }
            }
        }
        let ports_at = at.field("ports");
        let mut seen = Vec::new();
        for (i, p) in spec.ports.iter().enumerate() {
            let p_at = ports_at.index(i);
            check_port_entry(&p.name, p.port, &p.app_protocol, &p_at, v);
            p.target_port.validate(&p_at.field("targetPort"), v);
            if let Some(n) = p.name.as_deref().filter(|n| !n.is_empty()) {
                if seen.contains(&n) {
                    v.add(
                        &p_at.field("name"),
                        format!("{n:?} is already used by another port"),
                    );
                }
                seen.push(n);
            }
        }
        for (i, id) in spec.identities.iter().flatten().enumerate() {
            let id_at = at.field("identities").index(i);
            match &id.type_ {
                Some(t) => t.validate(&id_at.field("type"), v),
                None => v.add(&id_at.field("type"), "must be defined"),
            }
            match &id.value {
                Some(s) => check_non_empty(s, &id_at.field("value"), v),
                None => v.add(&id_at.field("value"), "must be defined"),
            }
        }
        if let Some(tls) = self.status.as_ref().and_then(|s| s.tls.as_ref()) {
            tls.status.validate(
                &FieldPath::root()
                    .field("status")
                    .field("tls")
                    .field("status"),
                v,
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
    fn valid_service_is_accepted_and_typed() {
        let r = Resource::from_value(json!({
            "type": "MeshService", "name": "redis", "mesh": "default",
            "spec": {
                "selector": {"dataplaneTags": {"app": "redis"}},
                "ports": [
                    {"port": 6379, "targetPort": 6379, "appProtocol": "tcp"},
                    {"name": "admin", "port": 16379, "targetPort": "admin-port"}
                ],
                "identities": [{"type": "ServiceTag", "value": "redis"}]
            },
            "status": {"vips": [{"ip": "241.0.0.1"}], "tls": {"status": "Ready"}}
        }))
        .expect("valid");
        let doc: MeshServiceDoc =
            serde_json::from_value(serde_json::Value::Object(r.spec)).expect("typed");
        let spec = doc.spec.expect("spec");
        assert_eq!(spec.ports[0].target_port, Some(PortOrName::Number(6379)));
        assert_eq!(
            spec.ports[1].target_port,
            Some(PortOrName::Name("admin-port".into()))
        );
        assert_eq!(spec.ports[1].protocol(), Protocol::Tcp);
    }

    #[test]
    fn bad_port_target_port_and_protocol_reported_together() {
        assert_eq!(
            fields(json!({
                "type": "MeshService", "name": "s",
                "spec": {"ports": [{"port": 70000, "targetPort": true, "appProtocol": "udp"}]}
            })),
            vec![
                "spec.ports[0].port",
                "spec.ports[0].appProtocol",
                "spec.ports[0].targetPort"
            ]
        );
    }

    #[test]
    fn two_selectors_and_missing_port_are_refused() {
        assert_eq!(
            fields(json!({
                "type": "MeshService", "name": "s",
                "spec": {
                    "selector": {"dataplaneTags": {"a": "b"}, "dataplaneRef": {"name": "dp"}},
                    "ports": [{"targetPort": 0}]
                }
            })),
            vec![
                "spec.selector",
                "spec.ports[0].port",
                "spec.ports[0].targetPort"
            ]
        );
    }

    #[test]
    fn bad_state_identity_and_duplicate_port_name() {
        assert_eq!(
            fields(json!({
                "type": "MeshService", "name": "s",
                "spec": {
                    "state": "Maybe",
                    "ports": [{"name": "a", "port": 1}, {"name": "a", "port": 2}],
                    "identities": [{"type": "Email"}]
                }
            })),
            vec![
                "spec.state",
                "spec.ports[1].name",
                "spec.identities[0].type",
                "spec.identities[0].value"
            ]
        );
    }
}
