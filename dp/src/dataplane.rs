//! Reading what atoll-dp is told to register: the Dataplane (or ZoneIngress/ZoneEgress) document,
//! checked with atoll-core's validation, and the dataplane token. Every problem is one line.

use std::path::Path;

use atoll_core::{Kind, Resource};
use serde_json::Value;

use crate::config::ProxyType;

/// A checked document.
#[derive(Debug, Clone)]
pub struct Document {
    pub resource: Resource,
    /// The document as sent to the control plane (the universal format, mesh filled in).
    pub value: Value,
}

/// Reads and validates the dataplane file. On failure, one line per problem.
pub fn read_document(path: &Path, proxy_type: ProxyType) -> Result<Document, Vec<String>> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("cannot read the dataplane file {shown}: {e}")])?;
    parse_document(&text, &shown.to_string(), proxy_type)
}

/// Parses and validates a document's text; `source` names it in messages.
pub fn parse_document(
    text: &str,
    source: &str,
    proxy_type: ProxyType,
) -> Result<Document, Vec<String>> {
    let value =
        atoll_core::format::parse_document(text).map_err(|e| vec![format!("{source}: {e}")])?;
    let expected = proxy_type.expected_kind();
    match value.get("type").and_then(Value::as_str) {
        Some(t) if t == expected.name() => {}
        Some(t) => {
            let hint = match Kind::from_name(t) {
                Some(Kind::Dataplane) => " (use --proxy-type sidecar)",
                Some(Kind::ZoneIngress) => " (use --proxy-type ingress)",
                Some(Kind::ZoneEgress) => " (use --proxy-type egress)",
                _ => "",
            };
            return Err(vec![format!(
                "{source}: type: expected {:?} for --proxy-type {}, found {t:?}{hint}",
                expected.name(),
                proxy_type.as_str()
            )]);
        }
        None => {}
    }
    let resource = Resource::from_value(value).map_err(|violations| {
        violations
            .iter()
            .map(|v| {
                if v.field.is_empty() {
                    format!("{source}: invalid {}: {}", expected.name(), v.message)
                } else {
                    format!(
                        "{source}: invalid {}: {}: {}",
                        expected.name(),
                        v.field,
                        v.message
                    )
                }
            })
            .collect::<Vec<_>>()
    })?;
    let value = resource.to_value();
    Ok(Document { resource, value })
}

/// Reads a token file: surrounding whitespace is dropped; empty is an error.
pub fn read_token_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read the dataplane token file {}: {e}",
            path.display()
        )
    })?;
    check_token(
        text,
        &format!("the dataplane token file {}", path.display()),
    )
}

/// Checks a token given directly.
pub fn check_token(text: String, what: &str) -> Result<String, String> {
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("{what} is empty"));
    }
    Ok(token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"
type: Dataplane
mesh: default
name: web-1
networking:
  address: 127.0.0.1
  inbound:
    - port: 8080
      servicePort: 8081
      tags:
        kuma.io/service: web
"#;

    #[test]
    fn a_valid_dataplane_is_read() {
        let d = parse_document(VALID, "dp.yaml", ProxyType::Sidecar).expect("valid");
        assert_eq!(d.resource.name, "web-1");
        assert_eq!(d.value["networking"]["inbound"][0]["port"], 8080);
    }

    #[test]
    fn every_violation_is_a_line_with_its_field() {
        let text = VALID.replace("kuma.io/service: web", "version: v1");
        let errs = parse_document(&text, "dp.yaml", ProxyType::Sidecar).expect_err("invalid");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].contains("networking.inbound[0].tags[\"kuma.io/service\"]"),
            "{errs:?}"
        );
    }

    #[test]
    fn broken_yaml_and_wrong_type_are_reported() {
        let errs =
            parse_document("a: [1, 2\nb: c", "dp.yaml", ProxyType::Sidecar).expect_err("bad");
        assert!(errs[0].starts_with("dp.yaml: invalid YAML"), "{errs:?}");
        let errs = parse_document(VALID, "dp.yaml", ProxyType::Ingress).expect_err("wrong kind");
        assert!(errs[0].contains("expected \"ZoneIngress\""), "{errs:?}");
        assert!(errs[0].contains("--proxy-type sidecar"), "{errs:?}");
    }

    #[test]
    fn tokens_are_trimmed_and_must_not_be_empty() {
        assert_eq!(check_token(" abc\n".into(), "t").as_deref(), Ok("abc"));
        assert!(check_token("\n".into(), "t").is_err());
    }
}
