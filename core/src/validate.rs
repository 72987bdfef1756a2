//! Validation: every violation of a document is collected with its field path, so an operator sees
//! all of them at once instead of fixing one error per round trip.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::path::FieldPath;

/// One thing wrong with a document: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub field: String,
    pub message: String,
}

/// Every violation found in one document, and the warnings: things accepted (as Kuma accepts
/// them) but worth the operator's attention, such as an ignored annotation key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violations {
    pub violations: Vec<Violation>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Violation>,
}

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: &FieldPath, message: impl Into<String>) {
        self.violations.push(Violation {
            field: field.to_string(),
            message: message.into(),
        });
    }

    /// Records something accepted but worth a warning; it does not make the document invalid.
    pub fn warn(&mut self, field: &FieldPath, message: impl Into<String>) {
        self.warnings.push(Violation {
            field: field.to_string(),
            message: message.into(),
        });
    }

    /// True when there is no violation (warnings do not count).
    pub fn is_empty(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn len(&self) -> usize {
        self.violations.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Violation> {
        self.violations.iter()
    }

    /// Ok when nothing was found, the violations otherwise.
    pub fn into_result(self) -> Result<(), Violations> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }

    pub fn extend(&mut self, other: Violations) {
        self.violations.extend(other.violations);
        self.warnings.extend(other.warnings);
    }
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.violations.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            if v.field.is_empty() {
                write!(f, "{}", v.message)?;
            } else {
                write!(f, "{}: {}", v.field, v.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Violations {}

/// Semantic checks of a typed document, run after it deserialized.
pub trait Validate {
    /// Adds a violation for everything wrong below `at`.
    fn validate(&self, at: &FieldPath, v: &mut Violations);
}

impl<T: Validate> Validate for Option<T> {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        if let Some(t) = self {
            t.validate(at, v);
        }
    }
}

impl<T: Validate> Validate for Vec<T> {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        for (i, t) in self.iter().enumerate() {
            t.validate(&at.index(i), v);
        }
    }
}

impl<T: Validate> Validate for Box<T> {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        (**self).validate(at, v);
    }
}

/// Deserializes `value` into `T`, reporting every unknown field and every type error with its
/// path, then runs `T`'s semantic checks on what deserialized (a field with a type error is left
/// out of them, so it is reported once). Returns the typed document unless a type error made
/// that impossible.
pub fn parse_and_validate<T: DeserializeOwned + Validate>(
    value: &Value,
    at: &FieldPath,
    v: &mut Violations,
) -> Option<T> {
    let mut type_errors = Vec::new();
    let typed = parse_collecting::<T>(value, at, v, &mut type_errors);
    // An object that lacks a required field was removed whole; what its parent then lacks is
    // a consequence, not news: semantic checks wait until the document is whole.
    let incomplete = type_errors.iter().any(|e| e.missing_field);
    if let Some(t) = typed.as_ref().filter(|_| !incomplete) {
        let before = v.violations.len();
        t.validate(at, v);
        // A field removed for its type error would also read as missing or empty here.
        let mut i = before;
        while i < v.violations.len() {
            if type_errors
                .iter()
                .any(|e| is_at_or_below(&v.violations[i].field, &e.path))
            {
                v.violations.remove(i);
            } else {
                i += 1;
            }
        }
    }
    if type_errors.is_empty() { typed } else { None }
}

/// Deserializes `value` into `T`, reporting unknown fields and every type error with its path.
pub fn parse_typed<T: DeserializeOwned>(
    value: &Value,
    at: &FieldPath,
    v: &mut Violations,
) -> Option<T> {
    let mut type_errors = Vec::new();
    let typed = parse_collecting::<T>(value, at, v, &mut type_errors);
    if type_errors.is_empty() { typed } else { None }
}

/// A value left out of the typed document because it did not deserialize.
struct TypeError {
    path: String,
    /// The value was an object without a required field.
    missing_field: bool,
}

/// How many type errors one document may report before the rest are left for the next try.
const MAX_TYPE_ERRORS: usize = 32;

/// Deserializes `value`; on a type error, records it, removes the offending value from a copy
/// of the document and tries again, so every type error is reported, not only the first.
/// Returns what finally deserialized (without the removed values); `type_errors` receives the
/// paths that were removed.
fn parse_collecting<T: DeserializeOwned>(
    value: &Value,
    at: &FieldPath,
    v: &mut Violations,
    type_errors: &mut Vec<TypeError>,
) -> Option<T> {
    let mut unknown: Vec<FieldPath> = Vec::new();
    let mut doc: Option<Value> = None;
    loop {
        let current = doc.as_ref().unwrap_or(value);
        let result: Result<T, _> = {
            let mut on_unknown = |p: serde_ignored::Path<'_>| {
                let path = ignored_path(at, &p);
                if !unknown.contains(&path) {
                    unknown.push(path);
                }
            };
            let strict = crate::strict::StrictValue(current);
            let ignoring = serde_ignored::Deserializer::new(strict, &mut on_unknown);
            serde_path_to_error::deserialize(ignoring)
        };
        match result {
            Ok(t) => {
                report_unknown(&unknown, v);
                return Some(t);
            }
            Err(e) => {
                let path = error_path(at, e.path());
                let message = clean_serde_message(&e.inner().to_string());
                type_errors.push(TypeError {
                    path: path.to_string(),
                    missing_field: message.starts_with("missing field"),
                });
                v.add(&path, message);
                // A missing field: removing the incomplete object would only report its
                // absence from the parent next.
                let removable = if type_errors.len() < MAX_TYPE_ERRORS
                    && !type_errors.last().is_some_and(|e| e.missing_field)
                {
                    json_pointer(e.path()).and_then(|pointer| {
                        let mut copy = current.clone();
                        remove_at(&mut copy, &pointer).then_some(copy)
                    })
                } else {
                    None
                };
                match removable {
                    Some(next) => doc = Some(next),
                    None => {
                        report_unknown(&unknown, v);
                        return None;
                    }
                }
            }
        }
    }
}

fn report_unknown(unknown: &[FieldPath], v: &mut Violations) {
    for path in unknown {
        // Kuma's documentation annotates references with keys such as `_port`; Kuma ignores
        // them, and so do we, with a warning. Any other unknown field is an error.
        let last = path.as_str().rsplit(['.', '[']).next().unwrap_or("");
        if last.starts_with('_') {
            v.warn(
                path,
                "ignored: keys starting with '_' are annotations, not fields",
            );
        } else {
            v.add(path, "unknown field");
        }
    }
}

/// True when `field` is `path` or a field or element below it.
fn is_at_or_below(field: &str, path: &str) -> bool {
    field == path
        || field
            .strip_prefix(path)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

/// The JSON pointer of a deserialization error's path; `None` for the root (nothing to remove)
/// or a path through an enum variant (not a plain object key).
fn json_pointer(p: &serde_path_to_error::Path) -> Option<Vec<String>> {
    use serde_path_to_error::Segment;
    let mut out = Vec::new();
    for seg in p.iter() {
        match seg {
            Segment::Seq { index } => out.push(index.to_string()),
            Segment::Map { key } => out.push(key.clone()),
            Segment::Enum { .. } | Segment::Unknown => return None,
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Removes the object key at `pointer`. False when there is none: a list element cannot go
/// without renumbering its siblings (and the paths of their errors), so parsing stops there.
fn remove_at(doc: &mut Value, pointer: &[String]) -> bool {
    let Some((last, parents)) = pointer.split_last() else {
        return false;
    };
    let mut cur = doc;
    for seg in parents {
        cur = match cur {
            Value::Object(m) => match m.get_mut(seg) {
                Some(next) => next,
                None => return false,
            },
            Value::Array(a) => match seg.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                Some(next) => next,
                None => return false,
            },
            _ => return false,
        };
    }
    match cur {
        Value::Object(m) => m.remove(last).is_some(),
        _ => false,
    }
}

fn ignored_path(at: &FieldPath, p: &serde_ignored::Path<'_>) -> FieldPath {
    use serde_ignored::Path as P;
    match p {
        P::Root => at.clone(),
        P::Seq { parent, index } => ignored_path(at, parent).index(*index),
        P::Map { parent, key } => map_entry(ignored_path(at, parent), key),
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            ignored_path(at, parent)
        }
    }
}

fn error_path(at: &FieldPath, p: &serde_path_to_error::Path) -> FieldPath {
    use serde_path_to_error::Segment;
    let mut out = at.clone();
    for seg in p.iter() {
        out = match seg {
            Segment::Seq { index } => out.index(*index),
            Segment::Map { key } => map_entry(out, key),
            Segment::Enum { variant } => out.field(variant),
            Segment::Unknown => out,
        };
    }
    out
}

/// A field of an object (`spec.to`), or an entry of a map whose key is not a plain name
/// (`tags["kuma.io/service"]`), written as Kuma writes them.
fn map_entry(parent: FieldPath, key: &str) -> FieldPath {
    let plain = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        parent.field(key)
    } else {
        parent.key(key)
    }
}

/// serde's messages mention Rust types ("invalid type: string, expected u32"); keep them but drop
/// the Rust-only details an operator cannot act on.
fn clean_serde_message(msg: &str) -> String {
    msg.replace("expected u32", "expected a non-negative integer")
        .replace("expected u16", "expected a non-negative integer")
        .replace("expected u64", "expected a non-negative integer")
        .replace("expected i64", "expected an integer")
        .replace("expected i32", "expected an integer")
        .replace("expected a sequence", "expected a list")
        .replace("expected a map", "expected an object")
}

/// Checks that a required value is present.
pub fn require<T>(value: &Option<T>, at: &FieldPath, v: &mut Violations) -> bool {
    if value.is_none() {
        v.add(at, "must be defined");
        false
    } else {
        true
    }
}

/// Checks a TCP/UDP port number: 1..=65535.
pub fn check_port(port: i64, at: &FieldPath, v: &mut Violations) {
    if !(1..=65535).contains(&port) {
        v.add(at, "must be in the range 1-65535");
    }
}

/// Checks that a string is not empty.
pub fn check_non_empty(s: &str, at: &FieldPath, v: &mut Violations) {
    if s.trim().is_empty() {
        v.add(at, "must not be empty");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Inner {
        port: i64,
        #[serde(default)]
        name: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    struct Outer {
        items: Vec<Inner>,
    }

    impl Validate for Outer {
        fn validate(&self, at: &FieldPath, v: &mut Violations) {
            for (i, item) in self.items.iter().enumerate() {
                check_port(item.port, &at.field("items").index(i).field("port"), v);
                let _ = &item.name;
            }
        }
    }

    #[test]
    fn collects_unknown_fields_and_semantic_errors_together() {
        let value =
            json!({"items": [{"port": 0, "bogus": 1}, {"port": 80, "other": true}], "top": 1});
        let mut v = Violations::new();
        let parsed = parse_and_validate::<Outer>(&value, &FieldPath::root().field("spec"), &mut v);
        assert!(parsed.is_some());
        let fields: Vec<_> = v.iter().map(|x| x.field.as_str()).collect();
        assert!(fields.contains(&"spec.items[0].bogus"), "{fields:?}");
        assert!(fields.contains(&"spec.items[1].other"), "{fields:?}");
        assert!(fields.contains(&"spec.top"), "{fields:?}");
        assert!(fields.contains(&"spec.items[0].port"), "{fields:?}");
        assert_eq!(v.len(), 4);
    }

    #[test]
    fn underscore_keys_are_warnings_not_violations() {
        let value = json!({"items": [{"port": 80, "_port": 8080}]});
        let mut v = Violations::new();
        parse_and_validate::<Outer>(&value, &FieldPath::root(), &mut v);
        assert!(v.is_empty(), "{v}");
        assert_eq!(v.warnings.len(), 1);
        assert_eq!(v.warnings[0].field, "items[0]._port");
    }

    #[test]
    fn type_errors_name_the_field() {
        let value = json!({"items": [{"port": "eighty"}]});
        let mut v = Violations::new();
        let parsed = parse_and_validate::<Outer>(&value, &FieldPath::root(), &mut v);
        assert!(parsed.is_none());
        assert_eq!(v.violations[0].field, "items[0].port");
        assert!(v.violations[0].message.contains("invalid type"), "{v}");
    }

    #[derive(Debug, Deserialize)]
    struct Loose {
        items: Vec<LooseItem>,
    }

    #[derive(Debug, Deserialize)]
    struct LooseItem {
        #[serde(default)]
        port: Option<i64>,
        #[serde(default)]
        name: Option<String>,
    }

    impl Validate for Loose {
        fn validate(&self, at: &FieldPath, v: &mut Violations) {
            for (i, item) in self.items.iter().enumerate() {
                let port_at = at.field("items").index(i).field("port");
                match item.port {
                    Some(p) => check_port(p, &port_at, v),
                    None => v.add(&port_at, "must be defined"),
                }
                let _ = &item.name;
            }
        }
    }

    #[test]
    fn every_type_error_is_reported_and_the_rest_still_checked() {
        let value = json!({"items": [
            {"port": "eighty", "name": 7},
            {"port": 0},
            {"port": 80, "name": ["x"]}
        ]});
        let mut v = Violations::new();
        let parsed = parse_and_validate::<Loose>(&value, &FieldPath::root(), &mut v);
        assert!(parsed.is_none());
        let fields: Vec<_> = v.iter().map(|x| x.field.as_str()).collect();
        // Every type error once (the removed `port` is not also "missing"), and the semantic
        // check of the element that did parse.
        assert_eq!(
            fields.iter().filter(|f| **f == "items[0].port").count(),
            1,
            "{v}"
        );
        assert!(fields.contains(&"items[0].name"), "{v}");
        assert!(fields.contains(&"items[2].name"), "{v}");
        assert_eq!(v.len(), 4, "{v}");
        assert_eq!(
            fields.iter().filter(|f| **f == "items[1].port").count(),
            1,
            "{v}"
        );
        assert!(
            v.iter()
                .any(|x| x.field == "items[1].port" && x.message.contains("1-65535")),
            "{v}"
        );
    }

    #[test]
    fn a_missing_required_field_is_reported_once() {
        let value = json!({"items": [{"name": "a"}, {"port": "x"}]});
        let mut v = Violations::new();
        assert!(parse_and_validate::<Outer>(&value, &FieldPath::root(), &mut v).is_none());
        assert_eq!(v.len(), 1, "{v}");
        assert!(
            v.violations[0].message.contains("missing field `port`"),
            "{v}"
        );
    }

    #[derive(Debug, Deserialize)]
    struct Tagged {
        #[serde(default)]
        tags: std::collections::BTreeMap<String, String>,
    }

    impl Validate for Tagged {
        fn validate(&self, at: &FieldPath, v: &mut Violations) {
            if self.tags.contains_key("") {
                v.add(&at.field("tags"), "tag names must not be empty");
            }
        }
    }

    #[test]
    fn map_keys_that_are_not_names_are_written_in_brackets() {
        let value = json!({"tags": {"kuma.io/service": 1, "version": true}});
        let mut v = Violations::new();
        parse_and_validate::<Tagged>(&value, &FieldPath::root().field("spec"), &mut v);
        let fields: Vec<_> = v.iter().map(|x| x.field.as_str()).collect();
        assert_eq!(
            fields,
            ["spec.tags[\"kuma.io/service\"]", "spec.tags.version"],
            "{v}"
        );
    }
}
