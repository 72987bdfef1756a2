//! The universal envelope every resource shares (`type`, `mesh`, `name`, `labels`, timestamps,
//! `version`) around its kind-specific fields.
//!
//! The kind-specific fields are kept exactly as written (a JSON object in field order), so what an
//! operator reads back equals what they wrote; typed views are built from it for validation.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use crate::kind::{Kind, Scope};
use crate::name::{check_mesh_name, check_resource_name};
use crate::path::FieldPath;
use crate::validate::Violations;

/// Envelope fields: everything else in a document is the kind's own.
pub const ENVELOPE_FIELDS: &[&str] = &[
    "type",
    "mesh",
    "name",
    "labels",
    "creationTime",
    "modificationTime",
    "version",
];

/// The mesh a mesh-scoped resource belongs to when its document names none.
pub const DEFAULT_MESH: &str = "default";

/// What identifies a resource in a store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    pub kind: Kind,
    /// Empty for global-scoped kinds.
    pub mesh: String,
    pub name: String,
}

impl ResourceKey {
    pub fn new(kind: Kind, mesh: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind,
            mesh: mesh.into(),
            name: name.into(),
        }
    }

    pub fn global(kind: Kind, name: impl Into<String>) -> Self {
        Self::new(kind, "", name)
    }
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mesh.is_empty() {
            write!(f, "{} {:?}", self.kind, self.name)
        } else {
            write!(f, "{} {:?} in mesh {:?}", self.kind, self.name, self.mesh)
        }
    }
}

/// One resource: envelope plus the kind's own fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub kind: Kind,
    /// Empty for global-scoped kinds.
    pub mesh: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Every non-envelope top-level field, as written.
    pub spec: Map<String, Value>,
    /// Store version: 0 for a resource not stored yet; incremented on every update.
    pub version: i64,
    pub creation_time: Option<DateTime<Utc>>,
    pub modification_time: Option<DateTime<Utc>>,
}

impl Resource {
    pub fn new(kind: Kind, mesh: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind,
            mesh: mesh.into(),
            name: name.into(),
            labels: BTreeMap::new(),
            spec: Map::new(),
            version: 0,
            creation_time: None,
            modification_time: None,
        }
    }

    pub fn key(&self) -> ResourceKey {
        ResourceKey::new(self.kind, self.mesh.clone(), self.name.clone())
    }

    /// Reads the envelope of one universal-format document and checks it. Kind-specific checks
    /// are `validate`'s. Server-set fields (timestamps) in the input are ignored; `version`, when
    /// given, is kept as the version the writer expects to replace.
    pub fn from_value(value: Value) -> Result<Resource, Violations> {
        Self::from_value_with_warnings(value).map(|(r, _)| r)
    }

    /// Like `from_value`, also returning the warnings of an accepted document.
    pub fn from_value_with_warnings(
        value: Value,
    ) -> Result<(Resource, Vec<crate::validate::Violation>), Violations> {
        let mut v = Violations::new();
        let root = FieldPath::root();
        let Value::Object(mut obj) = value else {
            v.add(
                &root,
                "a resource must be an object with type, name and its fields",
            );
            return Err(v);
        };
        let kind = match obj.remove("type") {
            Some(Value::String(t)) => match Kind::from_name(&t) {
                Some(k) => Some(k),
                None => {
                    let known: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                    v.add(
                        &root.field("type"),
                        format!("unknown kind {t:?}; known kinds: {}", known.join(", ")),
                    );
                    None
                }
            },
            Some(_) => {
                v.add(&root.field("type"), "must be a string naming the kind");
                None
            }
            None => {
                v.add(&root.field("type"), "must be defined");
                None
            }
        };
        let name = take_string(&mut obj, "name", &mut v);
        match &name {
            Some(n) => check_resource_name(n, &root.field("name"), &mut v),
            None if !v.iter().any(|x| x.field == "name") => {
                v.add(&root.field("name"), "must be defined")
            }
            None => {}
        }
        let mut mesh = take_string(&mut obj, "mesh", &mut v);
        if let Some(kind) = kind {
            match (kind.scope(), &mesh) {
                // As in Kuma, a mesh-scoped resource written without a mesh goes to `default`.
                (Scope::Mesh, None) => mesh = Some(DEFAULT_MESH.to_string()),
                (Scope::Mesh, Some(m)) => check_mesh_name(m, &root.field("mesh"), &mut v),
                (Scope::Global, Some(_)) => v.add(
                    &root.field("mesh"),
                    format!("must not be set: {kind} is not scoped to a mesh"),
                ),
                (Scope::Global, None) => {}
            }
            if let (Kind::Mesh, Some(n)) = (kind, &name) {
                check_mesh_name(n, &root.field("name"), &mut v);
            }
        }
        let labels = take_labels(&mut obj, &mut v);
        // Services become DNS labels (hostnames, Kubernetes Services): Kuma caps their names,
        // as written by their author (the display name of a synced copy), at 63 characters.
        if let (Some(Kind::MeshService | Kind::MeshExternalService), Some(n)) = (kind, &name) {
            let shown = labels.get(crate::labels::DISPLAY_NAME_LABEL).unwrap_or(n);
            if shown.len() > 63 {
                v.add(&root.field("name"), "must not be longer than 63 characters");
            }
        }
        let version = match obj.remove("version") {
            None | Some(Value::Null) => 0,
            Some(Value::Number(n)) if n.as_i64().is_some_and(|x| x >= 0) => n.as_i64().unwrap_or(0),
            Some(_) => {
                v.add(&root.field("version"), "must be a non-negative integer");
                0
            }
        };
        obj.remove("creationTime");
        obj.remove("modificationTime");
        for value in obj.values_mut() {
            stringify_map_scalars(value);
        }
        if let Some(kind) = kind {
            kind.validate_spec(&Value::Object(obj.clone()), &mut v);
        }
        match (kind, name) {
            (Some(kind), Some(name)) if v.is_empty() => Ok((
                Resource {
                    kind,
                    mesh: mesh.unwrap_or_default(),
                    name,
                    labels,
                    spec: obj,
                    version,
                    creation_time: None,
                    modification_time: None,
                },
                v.warnings,
            )),
            _ => Err(v),
        }
    }

    /// The universal-format document: envelope first, then the kind's fields as written.
    pub fn to_value(&self) -> Value {
        let mut out = Map::new();
        out.insert("type".into(), Value::String(self.kind.name().into()));
        if !self.mesh.is_empty() {
            out.insert("mesh".into(), Value::String(self.mesh.clone()));
        }
        out.insert("name".into(), Value::String(self.name.clone()));
        if let Some(t) = self.creation_time {
            out.insert("creationTime".into(), Value::String(format_time(t)));
        }
        if let Some(t) = self.modification_time {
            out.insert("modificationTime".into(), Value::String(format_time(t)));
        }
        if !self.labels.is_empty() {
            let labels = self
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            out.insert("labels".into(), Value::Object(labels));
        }
        if self.version > 0 {
            out.insert("version".into(), Value::from(self.version));
        }
        for (k, v) in &self.spec {
            out.insert(k.clone(), v.clone());
        }
        Value::Object(out)
    }
}

/// RFC 3339 in UTC with the precision Kuma prints (`2026-11-26T12:00:00.123456Z`).
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn take_string(obj: &mut Map<String, Value>, field: &str, v: &mut Violations) -> Option<String> {
    match obj.remove(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            v.add(&FieldPath::root().field(field), "must be a string");
            None
        }
    }
}

/// A scalar read as the string YAML wrote (`6000`, `true`), as Kuma reads the values of its
/// string maps; `None` for lists, objects and null.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Keys whose object values are string maps (tags and label selectors) in every kind.
const STRING_MAP_KEYS: &[&str] = &["tags", "labels", "matchLabels", "dataplaneTags"];
/// Keys holding free-form documents (Envoy config in MeshProxyPatch): left exactly as written.
const OPAQUE_KEYS: &[&str] = &["value", "jsonPatches"];

/// Writes scalar values of tag and label maps (`port: 6000`) as strings, in place.
fn stringify_map_scalars(doc: &mut Value) {
    match doc {
        Value::Object(obj) => {
            for (key, child) in obj.iter_mut() {
                if OPAQUE_KEYS.contains(&key.as_str()) {
                    continue;
                }
                if STRING_MAP_KEYS.contains(&key.as_str())
                    && let Value::Object(map) = child
                {
                    for value in map.values_mut() {
                        if matches!(value, Value::Number(_) | Value::Bool(_))
                            && let Some(text) = scalar_text(value)
                        {
                            *value = Value::String(text);
                        }
                    }
                    continue;
                }
                stringify_map_scalars(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(stringify_map_scalars),
        _ => {}
    }
}

fn take_labels(obj: &mut Map<String, Value>, v: &mut Violations) -> BTreeMap<String, String> {
    let at = FieldPath::root().field("labels");
    let mut labels = BTreeMap::new();
    match obj.remove("labels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, val) in m {
                if k.is_empty() {
                    v.add(&at, "label names must not be empty");
                    continue;
                }
                match scalar_text(&val) {
                    Some(s) => {
                        labels.insert(k, s);
                    }
                    None => v.add(&at.key(&k), "label values must be strings"),
                }
            }
        }
        Some(_) => v.add(&at, "must be a map of strings"),
    }
    labels
}

#[cfg(test)]
mod tests {

    #[test]
    fn scalar_tag_and_label_values_read_as_strings() {
        let r = Resource::from_value(serde_json::json!({
            "type": "Dataplane", "mesh": "default", "name": "dp",
            "labels": {"team": 7, "canary": true},
            "networking": {"address": "10.0.0.1", "inbound": [{"port": 8080,
                "tags": {"kuma.io/service": "web", "port": 6000, "stable": false}}]}
        }))
        .expect("scalars are strings");
        assert_eq!(r.labels["team"], "7");
        assert_eq!(r.labels["canary"], "true");
        assert_eq!(
            r.spec["networking"]["inbound"][0]["tags"],
            serde_json::json!({"kuma.io/service": "web", "port": "6000", "stable": "false"})
        );
        // Lists and objects are still not tag values.
        let v = Resource::from_value(serde_json::json!({
            "type": "Dataplane", "mesh": "default", "name": "dp",
            "networking": {"address": "10.0.0.1", "inbound": [{"port": 8080,
                "tags": {"kuma.io/service": "web", "port": [6000]}}]}
        }))
        .expect_err("a list is no tag value");
        assert_eq!(v.violations[0].field, "networking.inbound[0].tags.port");
    }

    #[test]
    fn service_names_longer_than_a_dns_label_are_refused() {
        let long = "a".repeat(64);
        for kind in ["MeshService", "MeshExternalService"] {
            let v = Resource::from_value(serde_json::json!({
                "type": kind, "mesh": "default", "name": long, "spec": {}
            }))
            .expect_err("too long");
            assert!(
                v.iter()
                    .any(|x| x.field == "name"
                        && x.message == "must not be longer than 63 characters"),
                "{kind}: {v}"
            );
        }
        // A synced copy's own name carries a suffix; its display name is what counts.
        let copy = Resource::from_value(serde_json::json!({
            "type": "MeshService", "mesh": "default", "name": format!("{}-zxc8v", "a".repeat(60)),
            "labels": {"kuma.io/display-name": "a".repeat(60)},
            "spec": {"ports": [{"port": 80, "targetPort": 8080, "appProtocol": "http"}]}
        }));
        assert!(
            copy.as_ref()
                .err()
                .is_none_or(|v| !v.iter().any(|x| x.field == "name")),
            "{copy:?}"
        );
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_kind_lists_known_kinds() {
        let err =
            Resource::from_value(json!({"type": "MeshTimout", "name": "x", "mesh": "default"}))
                .expect_err("unknown kind");
        assert_eq!(err.violations[0].field, "type");
        assert!(err.violations[0].message.contains("MeshTimout"));
        assert!(err.violations[0].message.contains("MeshTimeout"));
    }

    #[test]
    fn envelope_errors_are_reported_together() {
        let err = Resource::from_value(
            json!({"type": "Secret", "name": "bad name", "mesh": "Bad", "labels": {"a": [1]}}),
        )
        .expect_err("invalid");
        let fields: Vec<_> = err.iter().map(|x| x.field.clone()).collect();
        assert!(fields.contains(&"name".to_string()), "{fields:?}");
        assert!(fields.contains(&"mesh".to_string()), "{fields:?}");
        assert!(fields.contains(&"labels[\"a\"]".to_string()), "{fields:?}");
    }
}
