//! `ZoneIngress`: the proxy through which other zones reach this zone's services, and the
//! services it advertises.

use serde::Deserialize;

use crate::kinds::dataplane::{EnvoyAdmin, Tags, check_address, check_tags};
use crate::path::FieldPath;
use crate::validate::{Validate, Violations, check_port};

/// The kind-specific fields of a ZoneIngress.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneIngressDoc {
    /// The zone it runs in; set by the zone control plane.
    #[serde(default)]
    pub zone: Option<String>,
    #[serde(default)]
    pub networking: Option<ZoneIngressNetworking>,
    /// Services reachable through this ingress (filled in by the control plane).
    #[serde(default)]
    pub available_services: Vec<AvailableService>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneIngressNetworking {
    #[serde(default)]
    pub address: Option<String>,
    /// The address other zones dial (a load balancer in front of the ingress, say).
    #[serde(default)]
    pub advertised_address: Option<String>,
    /// The listener port (10001 by convention).
    #[serde(default)]
    pub port: Option<i64>,
    #[serde(default)]
    pub advertised_port: Option<i64>,
    #[serde(default)]
    pub admin: Option<EnvoyAdmin>,
}

impl ZoneIngressNetworking {
    /// What other zones dial: the advertised address and port when set, else the local ones.
    pub fn public_endpoint(&self) -> Option<(&str, i64)> {
        match (&self.advertised_address, self.advertised_port) {
            (Some(a), Some(p)) if p != 0 => Some((a.as_str(), p)),
            _ => Some((self.address.as_deref()?, self.port?)),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AvailableService {
    #[serde(default)]
    pub tags: Tags,
    #[serde(default)]
    pub instances: Option<u32>,
    #[serde(default)]
    pub mesh: Option<String>,
    #[serde(default)]
    pub external_service: Option<bool>,
}

impl Validate for ZoneIngressDoc {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        let net_at = at.field("networking");
        let Some(net) = &self.networking else {
            v.add(&net_at, "must be defined");
            return;
        };
        // Where the proxy's listener binds: required (`null` included), and an IP.
        match &net.address {
            Some(a) => check_address(a, &net_at.field("address"), v),
            None => v.add(&net_at.field("address"), "must be defined"),
        }
        if let Some(a) = &net.advertised_address {
            check_address(a, &net_at.field("advertisedAddress"), v);
        }
        match net.port {
            Some(p) => check_port(p, &net_at.field("port"), v),
            None => v.add(&net_at.field("port"), "must be defined"),
        }
        let adv_port = net.advertised_port.filter(|p| *p != 0);
        if let Some(p) = adv_port {
            check_port(p, &net_at.field("advertisedPort"), v);
        }
        match (&net.advertised_address, adv_port) {
            (None, Some(_)) => v.add(
                &net_at.field("advertisedAddress"),
                "must be set together with advertisedPort",
            ),
            (Some(_), None) => v.add(
                &net_at.field("advertisedPort"),
                "must be set together with advertisedAddress",
            ),
            _ => {}
        }
        if let Some(admin) = &net.admin {
            admin.validate(&net_at.field("admin"), v);
            if admin.port.is_some() && admin.port == net.port {
                v.add(
                    &net_at.field("admin").field("port"),
                    "must differ from port",
                );
            }
        }
        for (i, s) in self.available_services.iter().enumerate() {
            check_tags(
                &s.tags,
                &at.field("availableServices").index(i).field("tags"),
                v,
                true,
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
    fn valid_ingress_is_accepted() {
        let r = Resource::from_value(json!({
            "type": "ZoneIngress", "name": "ingress-1", "zone": "east",
            "networking": {
                "address": "192.168.0.1", "port": 10001,
                "advertisedAddress": "10.0.0.1", "advertisedPort": 10101
            },
            "availableServices": [
                {"tags": {"kuma.io/service": "web"}, "instances": 2, "mesh": "default"}
            ]
        }))
        .expect("valid");
        let doc: ZoneIngressDoc =
            serde_json::from_value(serde_json::Value::Object(r.spec)).expect("typed");
        let net = doc.networking.expect("networking");
        assert_eq!(net.public_endpoint(), Some(("10.0.0.1", 10101)));
    }

    #[test]
    fn advertised_pair_and_port_range_reported_together() {
        assert_eq!(
            fields(json!({
                "type": "ZoneIngress", "name": "i",
                "networking": {"address": "192.168.0.1", "port": 70000, "advertisedPort": 10001}
            })),
            vec!["networking.port", "networking.advertisedAddress"]
        );
    }

    #[test]
    fn the_listen_address_is_a_required_ip() {
        for (networking, message) in [
            (json!({"port": 10001}), "must be defined"),
            (json!({"address": null, "port": 10001}), "must be defined"),
            (
                json!({"address": "NaN", "port": 10001}),
                "must be a valid IP address",
            ),
        ] {
            let errors = Resource::from_value(
                json!({"type": "ZoneIngress", "name": "i", "networking": networking}),
            )
            .expect_err("refused")
            .to_string();
            assert!(
                errors.contains(&format!("networking.address: {message}")),
                "{errors}"
            );
        }
    }

    #[test]
    fn available_service_needs_service_tag() {
        assert_eq!(
            fields(json!({
                "type": "ZoneIngress", "name": "i",
                "networking": {"address": "192.168.0.1", "port": 10001},
                "availableServices": [{"tags": {"version": "v 1"}, "instances": 1}]
            })),
            vec![
                "availableServices[0].tags[\"kuma.io/service\"]",
                "availableServices[0].tags[\"version\"]"
            ]
        );
    }

    #[test]
    fn bad_addresses_and_missing_port() {
        assert_eq!(
            fields(json!({
                "type": "ZoneIngress", "name": "i",
                "networking": {"address": "::", "advertisedAddress": "bad host", "advertisedPort": 1}
            })),
            vec![
                "networking.address",
                "networking.advertisedAddress",
                "networking.port"
            ]
        );
    }
}
