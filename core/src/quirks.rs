//! Shapes found in Kuma's documented examples that Kuma's own decoder lets through, accepted here
//! with a warning that says what Atoll does with them. The stored document keeps them as written;
//! only the typed view (validation, config generation) sees the corrected shape.
//!
//! Each quirk is narrow on purpose: a misplaced field that a real operator might also misplace,
//! answered with a warning naming the right place, never a silently changed meaning.

use serde_json::Value;

use crate::kind::Kind;
use crate::path::FieldPath;
use crate::validate::Violations;

/// Returns the document the typed model should read, after removing known misplacements (each
/// reported as a warning). `None` when nothing had to change.
pub fn typed_view(kind: Kind, doc: &Value, v: &mut Violations) -> Option<Value> {
    match kind {
        Kind::MeshTrace => mesh_trace(doc, v),
        Kind::MeshHTTPRoute => mesh_http_route(doc, v),
        _ => None,
    }
}

/// MeshTrace: span `tags` (a list) and `sampling` written under `spec.targetRef` instead of
/// `spec.default`. Kuma's decoder drops them; so do we, and say where they belong.
fn mesh_trace(doc: &Value, v: &mut Violations) -> Option<Value> {
    let target_ref = doc.get("spec")?.get("targetRef")?.as_object()?;
    let misplaced_tags = target_ref.get("tags").is_some_and(Value::is_array);
    let misplaced_sampling = target_ref.contains_key("sampling");
    if !misplaced_tags && !misplaced_sampling {
        return None;
    }
    let mut fixed = doc.clone();
    let at = FieldPath::root().field("spec").field("targetRef");
    if let Some(tr) = fixed
        .get_mut("spec")
        .and_then(|s| s.get_mut("targetRef"))
        .and_then(Value::as_object_mut)
    {
        if misplaced_tags {
            tr.remove("tags");
            v.warn(
                &at.field("tags"),
                "ignored: span tags belong in spec.default.tags (a targetRef's tags are a map)",
            );
        }
        if misplaced_sampling {
            tr.remove("sampling");
            v.warn(
                &at.field("sampling"),
                "ignored: sampling belongs in spec.default.sampling",
            );
        }
    }
    Some(fixed)
}

/// MeshHTTPRoute: a `path` written beside `matches` in a rule (one indent too far left) instead
/// of inside a match. Kuma's decoder drops it, so the rule matches every request; we keep that
/// meaning and warn.
fn mesh_http_route(doc: &Value, v: &mut Violations) -> Option<Value> {
    let to = doc.get("spec")?.get("to")?.as_array()?;
    let has_quirk = to.iter().any(|entry| {
        entry
            .get("rules")
            .and_then(Value::as_array)
            .is_some_and(|rules| rules.iter().any(|r| r.get("path").is_some()))
    });
    if !has_quirk {
        return None;
    }
    let mut fixed = doc.clone();
    let to_at = FieldPath::root().field("spec").field("to");
    let entries = fixed
        .get_mut("spec")
        .and_then(|s| s.get_mut("to"))
        .and_then(Value::as_array_mut)?;
    for (i, entry) in entries.iter_mut().enumerate() {
        let Some(rules) = entry.get_mut("rules").and_then(Value::as_array_mut) else {
            continue;
        };
        for (j, rule) in rules.iter_mut().enumerate() {
            let removed = rule
                .as_object_mut()
                .is_some_and(|obj| obj.remove("path").is_some());
            if removed {
                v.warn(
                    &to_at.index(i).field("rules").index(j).field("path"),
                    "ignored: a path match belongs in rules[].matches[].path; this rule matches every request",
                );
            }
        }
    }
    Some(fixed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn misplaced_trace_sampling_is_removed_with_a_warning() {
        let doc = json!({"spec": {"targetRef": {"kind": "Mesh", "sampling": {"overall": 80}}, "default": {}}});
        let mut v = Violations::new();
        let fixed = typed_view(Kind::MeshTrace, &doc, &mut v).expect("changed");
        assert!(fixed["spec"]["targetRef"].get("sampling").is_none());
        assert_eq!(v.warnings[0].field, "spec.targetRef.sampling");
        assert!(v.is_empty());
    }

    #[test]
    fn documents_without_quirks_are_untouched() {
        let doc =
            json!({"spec": {"targetRef": {"kind": "Mesh"}, "to": [{"rules": [{"matches": []}]}]}});
        let mut v = Violations::new();
        assert!(typed_view(Kind::MeshHTTPRoute, &doc, &mut v).is_none());
        assert!(typed_view(Kind::MeshTrace, &doc, &mut v).is_none());
        assert!(v.warnings.is_empty());
    }
}
