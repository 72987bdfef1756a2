//! `HostnameGenerator`: a template that gives services selected by labels a DNS name; also the
//! label selector and the generated-address status types shared with the service kinds.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::path::FieldPath;
use crate::validate::{Validate, Violations};

/// The kind-specific fields of a HostnameGenerator.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostnameGeneratorDoc {
    #[serde(default)]
    pub spec: Option<HostnameGeneratorSpec>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostnameGeneratorSpec {
    /// Which services get a hostname: exactly one selector.
    #[serde(default)]
    pub selector: Option<HostnameGeneratorSelector>,
    /// A Go-template-style pattern, e.g. `{{ .DisplayName }}.{{ .Namespace }}.svc.mesh.local`.
    #[serde(default)]
    pub template: Option<String>,
    /// Plugin configuration.
    #[serde(default)]
    pub extension: Option<Extension>,
}

/// Selects services of one kind by their labels.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostnameGeneratorSelector {
    #[serde(default)]
    pub mesh_service: Option<LabelSelector>,
    #[serde(default)]
    pub mesh_external_service: Option<LabelSelector>,
    #[serde(default)]
    pub mesh_multi_zone_service: Option<LabelSelector>,
}

/// Selects resources whose labels include every `matchLabels` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: Option<BTreeMap<String, String>>,
}

impl LabelSelector {
    /// True when every selector label is present with the same value (an empty selector matches
    /// everything).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .flatten()
            .all(|(k, want)| labels.get(k) == Some(want))
    }
}

/// A plugin extension: a type name and free-form configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Extension {
    #[serde(rename = "type", default)]
    pub type_: Option<String>,
    #[serde(default)]
    pub config: Option<serde_json::Value>,
}

impl Validate for Extension {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        if self.type_.as_deref().is_none_or(|t| t.trim().is_empty()) {
            v.add(&at.field("type"), "must not be empty");
        }
    }
}

/// A generated address, as found in the status of MeshService and friends.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    #[serde(default)]
    pub hostname: Option<String>,
    /// `HostnameGenerator` or `Kubernetes`.
    #[serde(default)]
    pub origin: Option<String>,
    #[serde(default)]
    pub hostname_generator_ref: Option<HostnameGeneratorRef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostnameGeneratorRef {
    #[serde(default)]
    pub core_name: Option<String>,
}

/// How one HostnameGenerator fared on a service.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostnameGeneratorStatus {
    #[serde(default)]
    pub hostname_generator_ref: Option<HostnameGeneratorRef>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// A Kubernetes-style status condition.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type", default)]
    pub type_: Option<String>,
    /// `True`, `False` or `Unknown`.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// The values a template may use.
#[derive(Debug, Clone, Default)]
pub struct TemplateInput<'a> {
    pub name: &'a str,
    pub display_name: &'a str,
    pub namespace: &'a str,
    pub mesh: &'a str,
    pub zone: &'a str,
    pub labels: Option<&'a BTreeMap<String, String>>,
}

/// Renders a hostname template. Supported actions: `{{ .Name }}`, `{{ .DisplayName }}`,
/// `{{ .Namespace }}`, `{{ .Mesh }}`, `{{ .Zone }}` and `{{ label "key" }}` (an error when the
/// label is missing), with optional `{{-`/`-}}` trim markers.
pub fn render_template(template: &str, input: &TemplateInput<'_>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err("unclosed action: missing \"}}\"".into());
        };
        let mut action = &after[..end];
        if let Some(a) = action.strip_prefix('-') {
            action = a;
            let kept = out.trim_end().len();
            out.truncate(kept);
        }
        let mut trim_after = false;
        if let Some(a) = action.strip_suffix('-') {
            action = a;
            trim_after = true;
        }
        out.push_str(&render_action(action.trim(), input)?);
        rest = &after[end + 2..];
        if trim_after {
            rest = rest.trim_start();
        }
    }
    if rest.contains("}}") {
        return Err("unexpected \"}}\" outside an action".into());
    }
    out.push_str(rest);
    Ok(out)
}

fn render_action(action: &str, input: &TemplateInput<'_>) -> Result<String, String> {
    let value = match action {
        ".Name" => input.name,
        ".DisplayName" => input.display_name,
        ".Namespace" => input.namespace,
        ".Mesh" => input.mesh,
        ".Zone" => input.zone,
        _ => {
            let Some(arg) = action.strip_prefix("label") else {
                return Err(format!(
                    "unsupported action {{{{ {action} }}}}; use .Name, .DisplayName, .Namespace, .Mesh, .Zone or label \"key\""
                ));
            };
            let key = arg
                .trim()
                .strip_prefix('"')
                .and_then(|k| k.strip_suffix('"'))
                .filter(|k| !k.is_empty())
                .ok_or_else(|| format!("label takes one quoted key, got {action:?}"))?;
            return match input.labels {
                // Validation renders with stub values and no labels.
                None => Ok("label".into()),
                Some(labels) => labels
                    .get(key)
                    .cloned()
                    .ok_or_else(|| format!("label {key:?} not found")),
            };
        }
    };
    Ok(value.to_string())
}

/// A DNS-1123 subdomain: lowercase alphanumerics, `-` and `.`, each label starting and ending
/// with an alphanumeric, at most 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

impl Validate for HostnameGeneratorDoc {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        let at = at.field("spec");
        let Some(spec) = &self.spec else {
            v.add(&at, "must be defined");
            return;
        };
        let sel_at = at.field("selector");
        let defined = spec.selector.as_ref().map_or(0, |s| {
            [
                s.mesh_service.is_some(),
                s.mesh_external_service.is_some(),
                s.mesh_multi_zone_service.is_some(),
            ]
            .iter()
            .filter(|x| **x)
            .count()
        });
        if defined != 1 {
            v.add(
                &sel_at,
                "must define exactly one of: meshService, meshExternalService, meshMultiZoneService",
            );
        }
        let tpl_at = at.field("template");
        match spec.template.as_deref() {
            None => v.add(&tpl_at, "must be defined"),
            Some(t) if t.trim().is_empty() => v.add(&tpl_at, "must not be empty"),
            Some(t) => {
                let stub = TemplateInput {
                    name: "name",
                    display_name: "displayname",
                    namespace: "namespace",
                    mesh: "mesh",
                    zone: "zone",
                    labels: None,
                };
                match render_template(t, &stub) {
                    Err(e) => v.add(&tpl_at, format!("invalid template: {e}")),
                    Ok(rendered) if !is_dns1123_subdomain(&rendered) => v.add(
                        &tpl_at,
                        format!("renders to {rendered:?}, which is not a valid DNS name"),
                    ),
                    Ok(_) => {}
                }
            }
        }
        spec.extension.validate(&at.field("extension"), v);
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
    fn valid_generator_is_accepted() {
        Resource::from_value(json!({
            "type": "HostnameGenerator", "name": "local",
            "spec": {
                "selector": {"meshService": {"matchLabels": {"kuma.io/origin": "zone"}}},
                "template": "{{ .DisplayName }}.{{ label \"k8s.kuma.io/namespace\" }}.svc.mesh.local"
            }
        }))
        .expect("valid");
    }

    #[test]
    fn renders_with_real_values() {
        let labels = BTreeMap::from([("team".to_string(), "pay".to_string())]);
        let input = TemplateInput {
            name: "n",
            display_name: "redis",
            namespace: "ns",
            mesh: "default",
            zone: "east",
            labels: Some(&labels),
        };
        assert_eq!(
            render_template(
                "{{ .DisplayName }}.{{ label \"team\" }}.{{.Zone}}.mesh",
                &input
            ),
            Ok("redis.pay.east.mesh".to_string())
        );
        assert!(render_template("{{ label \"nope\" }}", &input).is_err());
    }

    #[test]
    fn two_selectors_and_bad_template_reported_together() {
        assert_eq!(
            fields(json!({
                "type": "HostnameGenerator", "name": "g",
                "spec": {
                    "selector": {"meshService": {}, "meshExternalService": {}},
                    "template": "{{ .Name }}_UPPER"
                }
            })),
            vec!["spec.selector", "spec.template"]
        );
    }

    #[test]
    fn missing_template_unknown_action_and_empty_extension_type() {
        assert_eq!(
            fields(json!({
                "type": "HostnameGenerator", "name": "g",
                "spec": {"selector": {"meshService": {}}, "extension": {"config": {}}}
            })),
            vec!["spec.template", "spec.extension.type"]
        );
        assert_eq!(
            fields(json!({
                "type": "HostnameGenerator", "name": "g",
                "spec": {"selector": {"meshService": {}}, "template": "{{ .Unknown }}.mesh"}
            })),
            vec!["spec.template"]
        );
    }

    #[test]
    fn missing_spec_is_refused() {
        assert_eq!(
            fields(json!({"type": "HostnameGenerator", "name": "g"})),
            vec!["spec"]
        );
    }
}
