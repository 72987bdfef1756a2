//! Reading and writing documents: JSON or (multi-document) YAML in, YAML or JSON out.

use serde_json::Value;

/// Why a text could not be read as documents.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid YAML: {0}")]
    Yaml(String),
}

/// Parses a text holding one JSON document, or one or more YAML documents separated by `---`.
/// Empty documents are skipped.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, FormatError> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        return Ok(vec![serde_json::from_str(text)?]);
    }
    // YAML 1.2 booleans only: a tag value such as `y` or `on` stays a string.
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(text, options)
        .map_err(|e| FormatError::Yaml(e.to_string()))?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// Parses exactly one document (JSON or YAML).
pub fn parse_document(text: &str) -> Result<Value, FormatError> {
    let mut docs = parse_documents(text)?;
    match docs.len() {
        1 => Ok(docs.remove(0)),
        0 => Err(FormatError::Yaml("the document is empty".into())),
        n => Err(FormatError::Yaml(format!(
            "expected one document, found {n}"
        ))),
    }
}

/// Renders a value as YAML.
pub fn to_yaml(value: &Value) -> String {
    serde_saphyr::to_string(value).unwrap_or_else(|e| format!("# cannot render as YAML: {e}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_multi_document_yaml_and_json() {
        let docs = parse_documents("a: 1\n---\nb: [x, y]\n---\n").expect("parses");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["b"][1], "y");
        let j = parse_documents("{\"a\": 1}").expect("parses");
        assert_eq!(j[0]["a"], 1);
    }

    #[test]
    fn broken_yaml_is_an_error() {
        assert!(parse_documents("a: [1, 2\nb: c").is_err());
    }

    #[test]
    fn yaml_round_trips_values() {
        let v: Value = serde_json::json!({"s": "10s", "n": 5, "f": 0.5, "b": true, "l": ["a"], "m": {"k": "v"}});
        let back = parse_document(&to_yaml(&v)).expect("parses");
        assert_eq!(back, v);
    }
}
