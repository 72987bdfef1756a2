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

/// Deepest nesting of mappings and sequences accepted in YAML (JSON stops at serde_json's 128).
/// Resources nest about a dozen levels; the bound keeps a hostile document from exhausting the
/// stack or the CPU.
pub const MAX_YAML_DEPTH: usize = 64;
/// Most alias uses (`*name`) in one text, and most nodes they may replay in all: enough for
/// anchors that share a block, far from a "billion laughs" expansion.
pub const MAX_YAML_ALIASES: usize = 1_000;
pub const MAX_YAML_ALIAS_REPLAYED_EVENTS: usize = 20_000;
/// Most documents in one text (`atollctl apply -f`).
pub const MAX_DOCUMENTS: usize = 10_000;
/// Most nodes (mappings, sequences, scalars) in one document read alone, as the API reads one.
pub const MAX_NODES_PER_DOCUMENT: usize = 100_000;

fn yaml_options(max_documents: usize, max_nodes: usize) -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    // YAML 1.2 booleans only: a tag value such as `y` or `on` stays a string.
    options.strict_booleans = true;
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_YAML_DEPTH;
    budget.max_aliases = MAX_YAML_ALIASES;
    budget.max_documents = max_documents;
    budget.max_nodes = budget.max_nodes.min(max_nodes);
    options.budget = Some(budget);
    options.alias_limits = serde_saphyr::alias_limits! {
        max_total_replayed_events: MAX_YAML_ALIAS_REPLAYED_EVENTS,
    };
    options
}

fn read(text: &str, max_documents: usize, max_nodes: usize) -> Result<Vec<Value>, FormatError> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        return Ok(vec![serde_json::from_str(text).map_err(json_error)?]);
    }
    let docs: Vec<Value> =
        serde_saphyr::from_multiple_with_options(text, yaml_options(max_documents, max_nodes))
            .map_err(|e| FormatError::Yaml(e.to_string()))?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// serde_json refuses nesting deeper than 128 levels with "recursion limit exceeded": say so
/// in words an operator recognizes.
fn json_error(e: serde_json::Error) -> FormatError {
    if e.to_string().starts_with("recursion limit exceeded") {
        FormatError::Yaml(format!(
            "invalid JSON: nested deeper than 128 levels (line {}, column {})",
            e.line(),
            e.column()
        ))
    } else {
        FormatError::Json(e)
    }
}

/// Parses a text holding one JSON document, or one or more YAML documents separated by `---`
/// (at most [`MAX_DOCUMENTS`]). Empty documents are skipped.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, FormatError> {
    read(text, MAX_DOCUMENTS, usize::MAX)
}

/// Parses exactly one document (JSON or YAML), of at most [`MAX_NODES_PER_DOCUMENT`] nodes.
pub fn parse_document(text: &str) -> Result<Value, FormatError> {
    // Two documents are enough to tell that there are too many.
    let mut docs = read(text, 2, MAX_NODES_PER_DOCUMENT).map_err(|e| match e {
        FormatError::Yaml(m) if m.contains("documents") => {
            FormatError::Yaml("expected one document, found more".into())
        }
        other => other,
    })?;
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
    fn deep_nesting_is_refused_with_the_reason() {
        let deep_yaml = "a: ".to_string() + &"[".repeat(200) + &"]".repeat(200);
        let err = parse_document(&deep_yaml)
            .expect_err("too deep")
            .to_string();
        assert!(err.contains("depth"), "{err}");
        let deep_json = "{\"a\": ".to_string() + &"[".repeat(10_000) + &"]".repeat(10_000) + "}";
        let err = parse_document(&deep_json)
            .expect_err("too deep")
            .to_string();
        assert!(err.contains("nested deeper than 128 levels"), "{err}");
        let ok = "a: ".to_string() + &"[".repeat(40) + &"]".repeat(40);
        parse_document(&ok).expect("40 levels are fine");
    }

    #[test]
    fn alias_expansion_is_bounded() {
        // Nine levels of ten aliases each would expand to a billion nodes.
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (prev, name) in ["a", "b", "c", "d", "e", "f", "g", "h", "i"]
            .iter()
            .zip(["b", "c", "d", "e", "f", "g", "h", "i", "j"])
        {
            bomb += &format!(
                "{name}: &{name} [{}]\n",
                vec![format!("*{prev}"); 10].join(", ")
            );
        }
        let err = parse_document(&bomb).expect_err("refused").to_string();
        assert!(err.contains("alias"), "{err}");
        // Anchors that share a block are fine.
        let shared = "base: &tags {kuma.io/service: web}\nfirst: *tags\nsecond: *tags\n";
        let doc = parse_document(shared).expect("parses");
        assert_eq!(doc["second"]["kuma.io/service"], "web");
    }

    #[test]
    fn one_document_means_one() {
        let err = parse_document("a: 1\n---\nb: 2\n---\nc: 3\n")
            .expect_err("three documents")
            .to_string();
        assert!(err.contains("expected one document"), "{err}");
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
