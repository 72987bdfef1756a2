//! Resource documents: YAML and JSON text in, validated resources (or violations) out.

use atoll_core::Resource;
use atoll_core::format::{parse_document, parse_documents, to_yaml};
use serde_json::Value;

/// A (multi-document) YAML or JSON text, as `atollctl apply -f` reads it, and as one document,
/// as the REST API and atoll-dp read it.
pub fn resource_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_documents(text) {
        Ok(docs) => {
            for doc in docs {
                check_document(doc);
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    if let Ok(doc) = parse_document(text) {
        check_document(doc);
    }
}

/// A JSON body, as the REST API's PUT reads it, and the same text through `parse_documents`.
pub fn resource_json(data: &[u8]) {
    if let Ok(doc) = serde_json::from_slice::<Value>(data) {
        check_document(doc);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(docs) = parse_documents(text)
    {
        for doc in docs {
            check_document(doc);
        }
    }
}

/// Validates one document. An accepted resource must read back the same from its own
/// universal form (what the store keeps and `atollctl get` prints), in JSON and in YAML.
fn check_document(doc: Value) {
    match Resource::from_value_with_warnings(doc) {
        Ok((resource, warnings)) => {
            for w in &warnings {
                assert!(!w.field.is_empty() || !w.message.is_empty());
            }
            let value = resource.to_value();
            let again = Resource::from_value(value.clone());
            assert!(
                again.as_ref().is_ok_and(|r| *r == resource),
                "an accepted resource does not read back from its own document: {value} -> {again:?}"
            );
            let yaml = to_yaml(&value);
            let back = parse_document(&yaml);
            assert!(
                back.as_ref().is_ok_and(|b| *b == value),
                "an accepted resource does not read back from its YAML: {value} -> {yaml:?} -> {back:?}"
            );
        }
        Err(violations) => {
            assert!(!violations.is_empty(), "a refused document must say why");
            let _ = violations.to_string();
        }
    }
}
