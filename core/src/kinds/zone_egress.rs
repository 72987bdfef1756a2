//! `ZoneEgress`: the proxy through which a zone's traffic leaves for other zones and external
//! services.

use serde::Deserialize;

use crate::kinds::dataplane::{EnvoyAdmin, check_address};
use crate::path::FieldPath;
use crate::validate::{Validate, Violations, check_port};

/// The kind-specific fields of a ZoneEgress.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneEgressDoc {
    /// The zone it runs in; set by the zone control plane.
    #[serde(default)]
    pub zone: Option<String>,
    #[serde(default)]
    pub networking: Option<ZoneEgressNetworking>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneEgressNetworking {
    #[serde(default)]
    pub address: Option<String>,
    /// The listener port (10002 by convention).
    #[serde(default)]
    pub port: Option<i64>,
    #[serde(default)]
    pub admin: Option<EnvoyAdmin>,
}

impl Validate for ZoneEgressDoc {
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
        match net.port {
            Some(p) => check_port(p, &net_at.field("port"), v),
            None => v.add(&net_at.field("port"), "must be defined"),
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
    fn valid_egress_is_accepted() {
        let r = Resource::from_value(json!({
            "type": "ZoneEgress", "name": "egress-1", "zone": "east",
            "networking": {"address": "192.168.0.1", "port": 10002, "admin": {"port": 9901}}
        }))
        .expect("valid");
        let doc: ZoneEgressDoc =
            serde_json::from_value(serde_json::Value::Object(r.spec)).expect("typed");
        assert_eq!(doc.networking.and_then(|n| n.port), Some(10002));
    }

    #[test]
    fn bad_address_and_port_reported_together() {
        assert_eq!(
            fields(json!({
                "type": "ZoneEgress", "name": "e",
                "networking": {"address": "0.0.0.0", "port": 0}
            })),
            vec!["networking.address", "networking.port"]
        );
    }

    #[test]
    fn admin_port_must_differ_and_port_is_required() {
        assert_eq!(
            fields(json!({
                "type": "ZoneEgress", "name": "e",
                "networking": {"address": "10.0.0.1", "port": 10002, "admin": {"port": 10002}}
            })),
            vec!["networking.admin.port"]
        );
        assert_eq!(
            fields(json!({
                "type": "ZoneEgress", "name": "e",
                "networking": {"address": "10.0.0.1", "admin": {"port": 70000}}
            })),
            vec!["networking.port", "networking.admin.port"]
        );
    }

    #[test]
    fn networking_is_required() {
        assert_eq!(
            fields(json!({"type": "ZoneEgress", "name": "e", "zone": "z"})),
            vec!["networking"]
        );
    }
}
