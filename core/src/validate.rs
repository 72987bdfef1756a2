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

/// Deserializes `value` into `T`, reporting every unknown field and the first type error with its
/// path, then runs `T`'s semantic checks. Returns the typed document when it deserialized.
pub fn parse_and_validate<T: DeserializeOwned + Validate>(
    value: &Value,
    at: &FieldPath,
    v: &mut Violations,
) -> Option<T> {
    let typed = parse_typed::<T>(value, at, v)?;
    typed.validate(at, v);
    Some(typed)
}

/// Deserializes `value` into `T`, reporting unknown fields and the first type error with its path.
pub fn parse_typed<T: DeserializeOwned>(
    value: &Value,
    at: &FieldPath,
    v: &mut Violations,
) -> Option<T> {
    let mut unknown: Vec<FieldPath> = Vec::new();
    let result: Result<T, _> = {
        let mut on_unknown = |p: serde_ignored::Path<'_>| unknown.push(ignored_path(at, &p));
        let strict = crate::strict::StrictValue(value);
        let ignoring = serde_ignored::Deserializer::new(strict, &mut on_unknown);
        serde_path_to_error::deserialize(ignoring)
    };
    for path in unknown {
        // Kuma's documentation annotates references with keys such as `_port`; Kuma ignores
        // them, and so do we, with a warning. Any other unknown field is an error.
        let last = path.as_str().rsplit(['.', '[']).next().unwrap_or("");
        if last.starts_with('_') {
            v.warn(
                &path,
                "ignored: keys starting with '_' are annotations, not fields",
            );
        } else {
            v.add(&path, "unknown field");
        }
    }
    match result {
        Ok(t) => Some(t),
        Err(e) => {
            let path = error_path(at, e.path());
            let message = clean_serde_message(&e.inner().to_string());
            v.add(&path, message);
            None
        }
    }
}

fn ignored_path(at: &FieldPath, p: &serde_ignored::Path<'_>) -> FieldPath {
    use serde_ignored::Path as P;
    match p {
        P::Root => at.clone(),
        P::Seq { parent, index } => ignored_path(at, parent).index(*index),
        P::Map { parent, key } => ignored_path(at, parent).field(key),
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
            Segment::Map { key } => out.field(key),
            Segment::Enum { variant } => out.field(variant),
            Segment::Unknown => out,
        };
    }
    out
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
}
