//! `MeshMultiZoneService`: one service made of the MeshServices of several zones, picked by labels.

use serde::Deserialize;

use crate::kinds::hostname_generator::{
    Address, Condition, HostnameGeneratorStatus, LabelSelector,
};
use crate::kinds::mesh_service::{Protocol, Vip, check_port_entry};
use crate::path::FieldPath;
use crate::validate::{Validate, Violations};

/// The kind-specific fields of a MeshMultiZoneService.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshMultiZoneServiceDoc {
    #[serde(default)]
    pub spec: Option<MeshMultiZoneServiceSpec>,
    /// Written by the control plane.
    #[serde(default)]
    pub status: Option<MeshMultiZoneServiceStatus>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshMultiZoneServiceSpec {
    #[serde(default)]
    pub selector: Option<MultiZoneSelector>,
    /// Ports of the selected MeshServices that this service exposes.
    #[serde(default)]
    pub ports: Vec<MultiZonePort>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MultiZoneSelector {
    #[serde(default)]
    pub mesh_service: Option<LabelSelector>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MultiZonePort {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub port: Option<i64>,
    /// Defaults to tcp.
    #[serde(default)]
    pub app_protocol: Option<Protocol>,
}

impl MultiZonePort {
    pub fn protocol(&self) -> Protocol {
        self.app_protocol.clone().unwrap_or(Protocol::Tcp)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshMultiZoneServiceStatus {
    #[serde(default)]
    pub addresses: Vec<Address>,
    #[serde(default)]
    pub vips: Vec<Vip>,
    #[serde(default)]
    pub mesh_services: Vec<MatchedMeshService>,
    #[serde(default)]
    pub hostname_generators: Vec<HostnameGeneratorStatus>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// A MeshService the selector matched.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchedMeshService {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub zone: Option<String>,
    #[serde(default)]
    pub mesh: Option<String>,
}

impl Validate for MeshMultiZoneServiceDoc {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        let at = at.field("spec");
        let Some(spec) = &self.spec else {
            v.add(&at, "must be defined");
            return;
        };
        let labels_at = at
            .field("selector")
            .field("meshService")
            .field("matchLabels");
        let has_labels = spec
            .selector
            .as_ref()
            .and_then(|s| s.mesh_service.as_ref())
            .and_then(|m| m.match_labels.as_ref())
            .is_some_and(|l| !l.is_empty());
        if !has_labels {
            v.add(&labels_at, "must select MeshServices by at least one label");
        }
        if spec.ports.is_empty() {
            v.add(&at.field("ports"), "must list at least one port");
        }
        for (i, p) in spec.ports.iter().enumerate() {
            check_port_entry(
                &p.name,
                p.port,
                &p.app_protocol,
                &at.field("ports").index(i),
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
    fn valid_service_is_accepted() {
        let r = Resource::from_value(json!({
            "type": "MeshMultiZoneService", "name": "redis", "mesh": "default",
            "spec": {
                "selector": {"meshService": {"matchLabels": {"kuma.io/display-name": "redis"}}},
                "ports": [{"port": 6379, "appProtocol": "tcp"}, {"name": "http", "port": 8080}]
            },
            "status": {"meshServices": [{"name": "redis", "zone": "east", "mesh": "default", "namespace": ""}]}
        }))
        .expect("valid");
        let doc: MeshMultiZoneServiceDoc =
            serde_json::from_value(serde_json::Value::Object(r.spec)).expect("typed");
        assert_eq!(doc.spec.expect("spec").ports[1].protocol(), Protocol::Tcp);
    }

    #[test]
    fn empty_selector_and_no_ports_reported_together() {
        assert_eq!(
            fields(json!({
                "type": "MeshMultiZoneService", "name": "m",
                "spec": {"selector": {"meshService": {"matchLabels": {}}}, "ports": []}
            })),
            vec!["spec.selector.meshService.matchLabels", "spec.ports"]
        );
    }

    #[test]
    fn bad_ports_are_all_reported() {
        assert_eq!(
            fields(json!({
                "type": "MeshMultiZoneService", "name": "m",
                "spec": {
                    "selector": {"meshService": {"matchLabels": {"app": "a"}}},
                    "ports": [{"name": "", "port": 0, "appProtocol": "udp"}, {"appProtocol": "http"}]
                }
            })),
            vec![
                "spec.ports[0].name",
                "spec.ports[0].port",
                "spec.ports[0].appProtocol",
                "spec.ports[1].port"
            ]
        );
    }

    #[test]
    fn missing_spec_and_unknown_selector_field() {
        assert_eq!(
            fields(json!({"type": "MeshMultiZoneService", "name": "m"})),
            vec!["spec"]
        );
        assert_eq!(
            fields(json!({
                "type": "MeshMultiZoneService", "name": "m",
                "spec": {"selector": {"meshServices": {}}, "ports": [{"port": 80}]}
            })),
            vec![
                "spec.selector.meshServices",
                "spec.selector.meshService.matchLabels"
            ]
        );
    }
}
