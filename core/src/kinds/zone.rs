//! `Zone`: a zone known to the global control plane, which may be disabled.

use serde::Deserialize;

use crate::path::FieldPath;
use crate::validate::{Validate, Violations};

/// The kind-specific fields of a Zone.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneDoc {
    /// A disabled zone gets no configuration and its services are not routed to; true when unset.
    #[serde(default)]
    pub enabled: Option<bool>,
}

impl ZoneDoc {
    pub fn is_enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }
}

impl Validate for ZoneDoc {
    fn validate(&self, _: &FieldPath, _: &mut Violations) {}
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
    fn valid_zones_are_accepted() {
        let r = Resource::from_value(json!({"type": "Zone", "name": "east", "enabled": false}))
            .expect("valid");
        let doc: ZoneDoc =
            serde_json::from_value(serde_json::Value::Object(r.spec)).expect("typed");
        assert!(!doc.is_enabled());
        Resource::from_value(json!({"type": "Zone", "name": "west"})).expect("valid");
    }

    #[test]
    fn enabled_must_be_a_boolean() {
        assert_eq!(
            fields(json!({"type": "Zone", "name": "z", "enabled": "yes"})),
            vec!["enabled"]
        );
    }

    #[test]
    fn unknown_fields_are_all_reported() {
        let mut f = fields(json!({"type": "Zone", "name": "z", "enable": true, "address": "x"}));
        f.sort();
        assert_eq!(f, vec!["address", "enable"]);
    }

    #[test]
    fn zone_is_not_mesh_scoped() {
        assert_eq!(
            fields(json!({"type": "Zone", "name": "z", "mesh": "default", "extra": 1})),
            vec!["mesh", "extra"]
        );
    }
}
