//! MeshProxyPatch: low-level changes to the Envoy configuration generated for the selected proxies:
//! add, patch (merge or JSON patch) or remove clusters, listeners, network filters, HTTP filters
//! and virtual hosts.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::format::parse_document;
use crate::path::FieldPath;
use crate::policies::common::{PolicyDoc, TopLevelOpts, check_top_level};
use crate::string_enum;
use crate::target_ref::{TargetRef, TargetRefKind as K};
use crate::validate::{Validate, Violations};

/// A MeshProxyPatch document (the part after the envelope).
/// The `MeshProxyPatch` document: its spec is all that is kind-specific.
pub type MeshProxyPatchDoc = PolicyDoc<MeshProxyPatchSpec>;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshProxyPatchSpec {
    /// The proxies configured; the whole mesh when left out.
    #[serde(default)]
    pub target_ref: Option<TargetRef>,
    /// Required.
    #[serde(default)]
    pub default: Option<ProxyPatchConf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyPatchConf {
    /// Required, not empty; applied in order after Kuma generated the configuration.
    #[serde(default)]
    pub append_modifications: Option<Vec<Modification>>,
}

/// Exactly one of the five modification kinds.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Modification {
    #[serde(default)]
    pub cluster: Option<ClusterMod>,
    #[serde(default)]
    pub listener: Option<ListenerMod>,
    #[serde(default)]
    pub network_filter: Option<NetworkFilterMod>,
    #[serde(default)]
    pub http_filter: Option<HttpFilterMod>,
    #[serde(default)]
    pub virtual_host: Option<VirtualHostMod>,
}

string_enum! {
    /// Operations on clusters, listeners and virtual hosts.
    pub enum ResourceOperation {
        Add => "Add",
        Remove => "Remove",
        Patch => "Patch",
    }
}

string_enum! {
    /// Operations on network and HTTP filters.
    pub enum FilterOperation {
        Remove => "Remove",
        Patch => "Patch",
        AddFirst => "AddFirst",
        AddBefore => "AddBefore",
        AddAfter => "AddAfter",
        AddLast => "AddLast",
    }
}

string_enum! {
    /// A JSON patch (RFC 6902) operation.
    pub enum JsonPatchOp {
        Add => "add",
        Remove => "remove",
        Replace => "replace",
        Move => "move",
        Copy => "copy",
    }
}

/// One JSON patch (RFC 6902) operation on the matched Envoy resource (camelCase field names).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JsonPatchBlock {
    /// Required.
    #[serde(default)]
    pub op: Option<JsonPatchOp>,
    /// A JSON pointer. Required.
    #[serde(default)]
    pub path: Option<String>,
    /// Any JSON value, for `add` and `replace`.
    #[serde(default)]
    pub value: Option<Value>,
    /// Source JSON pointer, for `move` and `copy`.
    #[serde(default)]
    pub from: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMod {
    /// Which clusters; all when left out.
    #[serde(default, rename = "match")]
    pub match_: Option<ClusterMatch>,
    /// Required.
    #[serde(default)]
    pub operation: Option<ResourceOperation>,
    /// An Envoy Cluster in YAML (whole for Add, partial for a Patch merge).
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub json_patches: Option<Vec<JsonPatchBlock>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMatch {
    /// Origin of the generated resource (`inbound`, `outbound`, `gateway`, ...).
    #[serde(default)]
    pub origin: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerMod {
    #[serde(default, rename = "match")]
    pub match_: Option<ListenerMatch>,
    /// Required.
    #[serde(default)]
    pub operation: Option<ResourceOperation>,
    /// An Envoy Listener in YAML.
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub json_patches: Option<Vec<JsonPatchBlock>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerMatch {
    #[serde(default)]
    pub origin: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// Tags of the listener's inbound or outbound.
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkFilterMod {
    #[serde(default, rename = "match")]
    pub match_: Option<FilterMatch>,
    /// Required.
    #[serde(default)]
    pub operation: Option<FilterOperation>,
    /// An Envoy network Filter in YAML.
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub json_patches: Option<Vec<JsonPatchBlock>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpFilterMod {
    #[serde(default, rename = "match")]
    pub match_: Option<FilterMatch>,
    /// Required.
    #[serde(default)]
    pub operation: Option<FilterOperation>,
    /// An Envoy HttpFilter in YAML.
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub json_patches: Option<Vec<JsonPatchBlock>>,
}

/// Selects filters (network or HTTP): by filter name, listener and origin.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterMatch {
    #[serde(default)]
    pub origin: Option<String>,
    /// The filter's name; required by AddBefore, AddAfter and Patch.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub listener_name: Option<String>,
    #[serde(default)]
    pub listener_tags: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualHostMod {
    #[serde(default, rename = "match")]
    pub match_: Option<VirtualHostMatch>,
    /// Required.
    #[serde(default)]
    pub operation: Option<ResourceOperation>,
    /// An Envoy VirtualHost in YAML.
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub json_patches: Option<Vec<JsonPatchBlock>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualHostMatch {
    #[serde(default)]
    pub origin: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub route_configuration_name: Option<String>,
}

const TOP_KINDS: &[K] = &[
    K::Mesh,
    K::MeshSubset,
    K::MeshService,
    K::MeshServiceSubset,
    K::MeshGateway,
    K::Dataplane,
];

impl Validate for MeshProxyPatchSpec {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        check_top_level(
            &self.target_ref,
            &at.field("targetRef"),
            TOP_KINDS,
            TopLevelOpts::default(),
            v,
        );
        let at = at.field("default");
        let Some(conf) = &self.default else {
            v.add(&at, "must be defined");
            return;
        };
        let at = at.field("appendModifications");
        let mods = conf.append_modifications.as_deref().unwrap_or_default();
        if mods.is_empty() {
            v.add(&at, "must not be empty");
        }
        for (i, m) in mods.iter().enumerate() {
            m.validate(&at.index(i), v);
        }
    }
}

impl Validate for Modification {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        let count = [
            self.cluster.is_some(),
            self.listener.is_some(),
            self.network_filter.is_some(),
            self.http_filter.is_some(),
            self.virtual_host.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if count != 1 {
            v.add(
                at,
                format!(
                    "must set exactly one of cluster, listener, networkFilter, httpFilter, \
                     virtualHost (set: {count})"
                ),
            );
        }
        if let Some(m) = &self.cluster {
            let at = at.field("cluster");
            let has_match = m.match_.is_some();
            check_resource_mod(&m.operation, has_match, &m.value, &m.json_patches, &at, v);
        }
        if let Some(m) = &self.listener {
            let at = at.field("listener");
            let has_match = m.match_.is_some();
            check_resource_mod(&m.operation, has_match, &m.value, &m.json_patches, &at, v);
        }
        if let Some(m) = &self.virtual_host {
            let at = at.field("virtualHost");
            // A virtual host is added to route configurations, which `match` may still select.
            let names_host = m.match_.as_ref().is_some_and(|x| x.name.is_some());
            if names_host && m.operation == Some(ResourceOperation::Add) {
                v.add(
                    &at.field("match").field("name"),
                    "must not be set when operation is Add",
                );
            }
            check_resource_mod(&m.operation, false, &m.value, &m.json_patches, &at, v);
        }
        if let Some(m) = &self.network_filter {
            let at = at.field("networkFilter");
            let name = m.match_.as_ref().and_then(|x| x.name.as_ref());
            check_filter_mod(&m.operation, name, &m.value, &m.json_patches, &at, v);
        }
        if let Some(m) = &self.http_filter {
            let at = at.field("httpFilter");
            let name = m.match_.as_ref().and_then(|x| x.name.as_ref());
            check_filter_mod(&m.operation, name, &m.value, &m.json_patches, &at, v);
        }
    }
}

fn check_resource_mod(
    operation: &Option<ResourceOperation>,
    has_match: bool,
    value: &Option<String>,
    json_patches: &Option<Vec<JsonPatchBlock>>,
    at: &FieldPath,
    v: &mut Violations,
) {
    let Some(op) = operation else {
        v.add(
            &at.field("operation"),
            "must be defined: one of Add, Remove, Patch",
        );
        return;
    };
    op.validate(&at.field("operation"), v);
    match op {
        ResourceOperation::Add => {
            if has_match {
                v.add(&at.field("match"), "must not be set when operation is Add");
            }
            check_add_value(value, json_patches, at, v);
        }
        ResourceOperation::Patch => check_patch(value, json_patches, at, v),
        ResourceOperation::Remove => check_remove(value, json_patches, at, v),
        ResourceOperation::Unknown(_) => {}
    }
}

fn check_filter_mod(
    operation: &Option<FilterOperation>,
    filter_name: Option<&String>,
    value: &Option<String>,
    json_patches: &Option<Vec<JsonPatchBlock>>,
    at: &FieldPath,
    v: &mut Violations,
) {
    use FilterOperation as Op;
    let Some(op) = operation else {
        v.add(
            &at.field("operation"),
            "must be defined: one of AddFirst, AddLast, AddBefore, AddAfter, Patch, Remove",
        );
        return;
    };
    op.validate(&at.field("operation"), v);
    if matches!(op, Op::AddBefore | Op::AddAfter | Op::Patch) && filter_name.is_none() {
        let why = match op {
            Op::AddBefore => "must be defined: the filter before which this one is added",
            Op::AddAfter => "must be defined: the filter after which this one is added",
            _ => "must be defined: the filter to patch",
        };
        v.add(&at.field("match").field("name"), why);
    }
    match op {
        Op::AddFirst | Op::AddLast | Op::AddBefore | Op::AddAfter => {
            check_add_value(value, json_patches, at, v)
        }
        Op::Patch => check_patch(value, json_patches, at, v),
        Op::Remove => check_remove(value, json_patches, at, v),
        Op::Unknown(_) => {}
    }
}

/// Adding needs the whole resource in `value`.
fn check_add_value(
    value: &Option<String>,
    json_patches: &Option<Vec<JsonPatchBlock>>,
    at: &FieldPath,
    v: &mut Violations,
) {
    match value {
        Some(text) => check_envoy_yaml(text, &at.field("value"), v),
        None => v.add(
            &at.field("value"),
            "must be defined: the Envoy resource to add, in YAML",
        ),
    }
    if json_patches.is_some() {
        v.add(&at.field("jsonPatches"), "must not be set when adding");
    }
}

/// Patching takes exactly one of a YAML merge `value` and `jsonPatches`.
fn check_patch(
    value: &Option<String>,
    json_patches: &Option<Vec<JsonPatchBlock>>,
    at: &FieldPath,
    v: &mut Violations,
) {
    let patches = json_patches.as_deref().unwrap_or_default();
    match (value, json_patches) {
        (Some(_), Some(p)) if !p.is_empty() => {
            v.add(at, "must set only one of value and jsonPatches");
        }
        (Some(text), _) => check_envoy_yaml(text, &at.field("value"), v),
        (None, Some(p)) if p.is_empty() => v.add(&at.field("jsonPatches"), "must not be empty"),
        (None, None) => v.add(at, "must set exactly one of value and jsonPatches"),
        (None, Some(_)) => {}
    }
    for (i, p) in patches.iter().enumerate() {
        p.validate(&at.field("jsonPatches").index(i), v);
    }
}

fn check_remove(
    value: &Option<String>,
    json_patches: &Option<Vec<JsonPatchBlock>>,
    at: &FieldPath,
    v: &mut Violations,
) {
    if value.is_some() {
        v.add(
            &at.field("value"),
            "must not be set when operation is Remove",
        );
    }
    if json_patches.is_some() {
        v.add(
            &at.field("jsonPatches"),
            "must not be set when operation is Remove",
        );
    }
}

/// An Envoy resource written in YAML (or JSON): it must read as a map of fields.
fn check_envoy_yaml(text: &str, at: &FieldPath, v: &mut Violations) {
    match parse_document(text) {
        Ok(Value::Object(_)) => {}
        Ok(_) => v.add(at, "must be an Envoy resource in YAML: a map of fields"),
        Err(e) => v.add(at, format!("must be an Envoy resource in YAML: {e}")),
    }
}

impl Validate for JsonPatchBlock {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        use JsonPatchOp as Op;
        let op = self.op.as_ref();
        match op {
            Some(o) => o.validate(&at.field("op"), v),
            None => v.add(
                &at.field("op"),
                "must be defined: one of add, remove, replace, move, copy",
            ),
        }
        let known = op.is_some_and(|o| o.is_known());
        let takes_from = matches!(op, Some(Op::Move | Op::Copy));
        let takes_value = matches!(op, Some(Op::Add | Op::Replace));
        if takes_from && self.from.is_none() {
            v.add(&at.field("from"), "must be defined when op is move or copy");
        } else if known && !takes_from && self.from.is_some() {
            v.add(&at.field("from"), "is only allowed when op is move or copy");
        }
        if takes_value && self.value.is_none() {
            v.add(
                &at.field("value"),
                "must be defined when op is add or replace",
            );
        } else if known && !takes_value && self.value.is_some() {
            v.add(
                &at.field("value"),
                "is only allowed when op is add or replace",
            );
        }
        match self.path.as_deref() {
            None => v.add(&at.field("path"), "must be defined"),
            Some("" | "/") if matches!(op, Some(Op::Remove)) => {
                v.add(&at.field("path"), "the root cannot be removed")
            }
            Some(p) if !p.is_empty() && !p.starts_with('/') => v.add(
                &at.field("path"),
                format!("must be a JSON pointer starting with '/' (got {p:?})"),
            ),
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::policies::common::test_support::{paths, policy};
    use serde_json::{Value, json};

    fn doc(spec: Value) -> Value {
        policy("MeshProxyPatch", "pp", spec)
    }

    #[test]
    fn accepts_a_full_document() {
        let spec = json!({
            "targetRef": {"kind": "MeshGateway", "name": "edge"},
            "default": {"appendModifications": [
                {"cluster": {"operation": "Add", "value": "name: c\nconnectTimeout: 5s\n"}},
                {"cluster": {"operation": "Patch", "match": {"name": "c", "origin": "outbound"},
                    "jsonPatches": [
                        {"op": "add", "path": "/a", "value": {"b": 1}},
                        {"op": "replace", "path": "/connectTimeout", "value": "7s"},
                        {"op": "remove", "path": "/a"},
                        {"op": "copy", "from": "/x", "path": "/y"},
                        {"op": "move", "from": "/y", "path": "/z"}]}},
                {"listener": {"operation": "Remove", "match": {"origin": "inbound",
                    "tags": {"kuma.io/service": "backend"}}}},
                {"networkFilter": {"operation": "AddBefore",
                    "match": {"name": "envoy.filters.network.tcp_proxy", "listenerName": "l",
                              "listenerTags": {"a": "b"}, "origin": "inbound"},
                    "value": "name: f\ntypedConfig:\n  '@type': type.googleapis.com/x\n"}},
                {"httpFilter": {"operation": "Patch", "match": {"name": "envoy.filters.http.router"},
                    "value": "typedConfig: {dynamicStats: false}"}},
                {"virtualHost": {"operation": "Patch",
                    "match": {"name": "b", "origin": "outbound", "routeConfigurationName": "r"},
                    "value": "retryPolicy:\n  numRetries: 3\n"}}
            ]}
        });
        assert_eq!(paths(doc(spec)), Vec::<String>::new());
    }

    #[test]
    fn reports_every_violation_with_its_path() {
        let spec = json!({
            "targetRef": {"kind": "MeshHTTPRoute", "name": "r"},
            "default": {"appendModifications": [
                {"cluster": {"operation": "Add", "match": {"name": "c"}}},
                {"listener": {"operation": "Patch", "value": "a: 1", "jsonPatches": [{"op": "add", "path": "/a", "value": 1}]}},
                {"networkFilter": {"operation": "AddAfter", "value": "- not a map"}},
                {"httpFilter": {"operation": "Remove", "value": "name: x"}},
                {"virtualHost": {"operation": "Patch", "jsonPatches": [
                    {"op": "move", "path": "/a"}, {"op": "remove", "path": "/", "value": 1}, {"op": "test"}]}},
                {"cluster": {"operation": "Merge"}, "listener": {"operation": "Remove"}}
            ]}
        });
        assert_eq!(
            paths(doc(spec)),
            [
                "spec.targetRef.kind",
                "spec.default.appendModifications[0].cluster.match",
                "spec.default.appendModifications[0].cluster.value",
                "spec.default.appendModifications[1].listener",
                "spec.default.appendModifications[2].networkFilter.match.name",
                "spec.default.appendModifications[2].networkFilter.value",
                "spec.default.appendModifications[3].httpFilter.value",
                "spec.default.appendModifications[4].virtualHost.jsonPatches[0].from",
                "spec.default.appendModifications[4].virtualHost.jsonPatches[1].value",
                "spec.default.appendModifications[4].virtualHost.jsonPatches[1].path",
                "spec.default.appendModifications[4].virtualHost.jsonPatches[2].op",
                "spec.default.appendModifications[4].virtualHost.jsonPatches[2].path",
                "spec.default.appendModifications[5]",
                "spec.default.appendModifications[5].cluster.operation",
            ]
        );
    }

    #[test]
    fn requires_default_and_modifications() {
        assert_eq!(paths(doc(json!({}))), ["spec.default"]);
        assert_eq!(
            paths(doc(
                json!({"default": {"appendModifications": []}, "targetRef": {"kind": "Mesh", "bogus": 1}})
            )),
            ["spec.targetRef.bogus", "spec.default.appendModifications"]
        );
    }
}
