//! The shapes the REST API puts on the wire besides resources, written by the control planes
//! and read by atollctl and atoll-dp, defined once so that writer and readers cannot drift:
//! Kuma's error body and Kuma's list page. Serde types only: no HTTP here.

use serde::{Deserialize, Serialize};

/// One cause of an error: the field and what is wrong with it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    #[serde(default)]
    pub field: String,
    #[serde(default)]
    pub message: String,
}

/// Kuma's error body: `{"title", "details", "causes": [{"field", "message"}]}`, `causes` left
/// out when there are none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub details: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<Cause>,
}

/// How much of a body that is not an error body is kept as its `details`.
const MAX_FOREIGN_DETAILS: usize = 500;

impl ErrorBody {
    /// Reads an error answer. A body that is not the JSON error format (a proxy's HTML page, a
    /// plain-text answer) becomes the `details`, trimmed and cut to 500 characters.
    pub fn parse(body: &[u8]) -> ErrorBody {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(e) if !e.title.is_empty() || !e.details.is_empty() || !e.causes.is_empty() => e,
            _ => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                let mut details: String = text.chars().take(MAX_FOREIGN_DETAILS).collect();
                if details.len() < text.len() {
                    details.push('…');
                }
                ErrorBody {
                    details,
                    ..ErrorBody::default()
                }
            }
        }
    }

    /// `details`, else `title`, else a placeholder.
    pub fn summary(&self) -> String {
        match (self.title.is_empty(), self.details.is_empty()) {
            (_, false) => self.details.clone(),
            (false, true) => self.title.clone(),
            (true, true) => "(no details given)".into(),
        }
    }
}

/// One page of a list: `{"total", "items", "next"}`, `next` the URL of the following page or
/// null on the last one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListPage<T> {
    #[serde(default)]
    pub total: u64,
    pub items: Vec<T>,
    #[serde(default)]
    pub next: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_bodies_are_written_as_kuma_clients_read_them() {
        let plain = ErrorBody {
            title: "Not found".into(),
            details: "Mesh \"x\" not found".into(),
            causes: vec![],
        };
        assert_eq!(
            serde_json::to_value(&plain).expect("json"),
            json!({"title": "Not found", "details": "Mesh \"x\" not found"})
        );
        let invalid = ErrorBody {
            causes: vec![Cause {
                field: "spec.to[0]".into(),
                message: "must be set".into(),
            }],
            ..plain
        };
        let text = serde_json::to_vec(&invalid).expect("json");
        assert_eq!(ErrorBody::parse(&text), invalid);
    }

    #[test]
    fn a_foreign_body_becomes_the_details() {
        let e = ErrorBody::parse(b"  <html>bad gateway</html>\n");
        assert_eq!(e.details, "<html>bad gateway</html>");
        assert_eq!(e.summary(), "<html>bad gateway</html>");
        let long = ErrorBody::parse("x".repeat(2000).as_bytes());
        assert_eq!(long.details.chars().count(), MAX_FOREIGN_DETAILS + 1);
        assert_eq!(ErrorBody::parse(b"").summary(), "(no details given)");
    }

    #[test]
    fn list_pages_keep_kumas_field_order_and_a_null_next() {
        let page = ListPage {
            total: 3,
            items: vec![json!({"name": "a"})],
            next: None,
        };
        assert_eq!(
            serde_json::to_string(&page).expect("json"),
            r#"{"total":3,"items":[{"name":"a"}],"next":null}"#
        );
    }
}
