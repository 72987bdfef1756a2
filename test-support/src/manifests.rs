//! Manifests as Atoll reads them back, for tests that compare documents.

/// Rewrites the numbers and booleans written as values of `tags`/`labels` maps as the strings
/// Kuma (and Atoll) read them as (`port: 1800` reads back as `"1800"`): what a manifest should
/// read back as.
pub fn quote_tag_scalars(doc: &mut serde_json::Value) {
    use serde_json::Value;
    match doc {
        Value::Object(obj) => {
            for (key, child) in obj.iter_mut() {
                if matches!(key.as_str(), "tags" | "labels")
                    && let Value::Object(map) = child
                {
                    for value in map.values_mut() {
                        if let Value::Number(_) | Value::Bool(_) = value {
                            *value = Value::String(value.to_string());
                        }
                    }
                } else {
                    quote_tag_scalars(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(quote_tag_scalars),
        _ => {}
    }
}
