//! Field paths used in validation messages, e.g. `spec.to[0].default.http.requestTimeout`.

use std::fmt;

/// A path to a field of a resource document, rendered the way operators read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(String);

impl FieldPath {
    /// The document root (an empty path).
    pub fn root() -> Self {
        Self(String::new())
    }

    /// The path of a named field below this one.
    pub fn field(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Self(name.to_string())
        } else {
            Self(format!("{}.{name}", self.0))
        }
    }

    /// The path of an element of a list at this path.
    pub fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }

    /// The path of an entry of a map at this path (tags, labels).
    pub fn key(&self, key: &str) -> Self {
        Self(format!("{}[{key:?}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_nested_paths() {
        let p = FieldPath::root()
            .field("spec")
            .field("to")
            .index(0)
            .field("default")
            .field("http")
            .field("requestTimeout");
        assert_eq!(p.as_str(), "spec.to[0].default.http.requestTimeout");
        let t = FieldPath::root().field("tags").key("kuma.io/service");
        assert_eq!(t.as_str(), "tags[\"kuma.io/service\"]");
    }
}
