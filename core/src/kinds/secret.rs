//! `Secret` (mesh-scoped) and `GlobalSecret`: one base64 `data` blob each; also `DataSource`, the
//! way other kinds point at secret material (a Secret's name, a file, or inline bytes).

use serde::Deserialize;

use crate::path::FieldPath;
use crate::validate::{Validate, Violations};

/// The kind-specific fields of a Secret or GlobalSecret.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretDoc {
    /// The secret bytes, base64-encoded (standard or URL-safe alphabet, padding optional).
    #[serde(default)]
    pub data: Option<String>,
}

impl SecretDoc {
    /// The decoded secret bytes; `None` when `data` is absent or not base64.
    pub fn decoded(&self) -> Option<Vec<u8>> {
        self.data.as_deref().and_then(decode_base64)
    }
}

impl Validate for SecretDoc {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        let at = at.field("data");
        match self.data.as_deref() {
            None => v.add(&at, "must be defined"),
            Some(d) => match decode_base64(d) {
                None => v.add(&at, "must be valid base64"),
                Some(bytes) if bytes.is_empty() => v.add(&at, "must not be empty"),
                Some(_) => {}
            },
        }
    }
}

/// Decodes base64 the way Kuma's JSON reader does for bytes fields: standard (`+/`) or URL-safe
/// (`-_`) alphabet, with or without `=` padding; line breaks are ignored.
pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3 + 3);
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    let mut symbols = 0usize;
    let mut padding = 0usize;
    for c in s.bytes() {
        if c == b'\n' || c == b'\r' {
            continue;
        }
        if c == b'=' {
            padding += 1;
            continue;
        }
        if padding > 0 {
            // Nothing but padding may follow padding.
            return None;
        }
        let sextet = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(sextet);
        bits += 6;
        symbols += 1;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if symbols % 4 == 1 || padding > 2 || (padding > 0 && !(symbols + padding).is_multiple_of(4)) {
        return None;
    }
    Some(out)
}

/// Where bytes come from (Kuma's `DataSource`): exactly one of the four fields.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataSource {
    /// Name of a Secret in the same mesh (or a GlobalSecret for global-scoped users).
    #[serde(default)]
    pub secret: Option<String>,
    /// Path of a file on the control plane's host.
    #[serde(default)]
    pub file: Option<String>,
    /// The bytes themselves, base64-encoded.
    #[serde(default)]
    pub inline: Option<String>,
    /// The bytes themselves, as text (a PEM block, for example).
    #[serde(default)]
    pub inline_string: Option<String>,
}

/// What a `DataSource` resolves to, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSourceRef<'a> {
    Secret(&'a str),
    File(&'a str),
    Inline(Vec<u8>),
    InlineString(&'a str),
}

impl DataSource {
    /// The one source set, decoded; `None` when zero or several are set or inline is not base64.
    pub fn source(&self) -> Option<DataSourceRef<'_>> {
        if self.set_count() != 1 {
            return None;
        }
        if let Some(s) = &self.secret {
            return Some(DataSourceRef::Secret(s));
        }
        if let Some(f) = &self.file {
            return Some(DataSourceRef::File(f));
        }
        if let Some(i) = &self.inline {
            return decode_base64(i).map(DataSourceRef::Inline);
        }
        self.inline_string
            .as_deref()
            .map(DataSourceRef::InlineString)
    }

    fn set_count(&self) -> usize {
        [
            self.secret.is_some(),
            self.file.is_some(),
            self.inline.is_some(),
            self.inline_string.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count()
    }

    /// Refuses `file`, for places where the bytes must travel with the resource (a proxy in
    /// another zone cannot read the control plane's files).
    pub fn check_no_file(&self, at: &FieldPath, v: &mut Violations) {
        if self.file.is_some() {
            v.add(
                &at.field("file"),
                "file data sources are not supported here; use secret, inline or inlineString",
            );
        }
    }
}

impl Validate for DataSource {
    fn validate(&self, at: &FieldPath, v: &mut Violations) {
        match self.set_count() {
            0 => v.add(
                at,
                "must set exactly one of: secret, file, inline, inlineString",
            ),
            1 => {}
            _ => v.add(
                at,
                "must set only one of: secret, file, inline, inlineString",
            ),
        }
        let non_empty = [
            ("secret", &self.secret),
            ("file", &self.file),
            ("inline", &self.inline),
            ("inlineString", &self.inline_string),
        ];
        for (name, value) in non_empty {
            if value.as_deref().is_some_and(|s| s.trim().is_empty()) {
                v.add(&at.field(name), "must not be empty");
            }
        }
        if let Some(i) = self.inline.as_deref().filter(|s| !s.trim().is_empty())
            && decode_base64(i).is_none()
        {
            v.add(&at.field("inline"), "must be valid base64");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Resource;
    use serde_json::json;

    fn fields(value: serde_json::Value) -> Vec<String> {
        Resource::from_value(value)
            .expect_err("invalid")
            .iter()
            .map(|x| x.field.clone())
            .collect()
    }

    #[test]
    fn decodes_both_alphabets_with_and_without_padding() {
        assert_eq!(decode_base64("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(decode_base64("aGVsbG8"), Some(b"hello".to_vec()));
        assert_eq!(decode_base64("-_8="), decode_base64("+/8="));
        assert_eq!(decode_base64("aGVs\nbG8="), Some(b"hello".to_vec()));
        assert_eq!(decode_base64(""), Some(Vec::new()));
        for bad in ["a", "aGVsbG8=x", "aGV*", "aGVsbG8===", "aGVsb===="] {
            assert_eq!(decode_base64(bad), None, "{bad}");
        }
    }

    #[test]
    fn valid_secret_and_global_secret_are_accepted() {
        let s = Resource::from_value(
            json!({"type": "Secret", "name": "sec-1", "mesh": "default", "data": "c2VjcmV0"}),
        )
        .expect("valid secret");
        let doc: SecretDoc =
            serde_json::from_value(serde_json::Value::Object(s.spec)).expect("typed");
        assert_eq!(doc.decoded(), Some(b"secret".to_vec()));
        Resource::from_value(json!({"type": "GlobalSecret", "name": "g-1", "data": "c2VjcmV0"}))
            .expect("valid global secret");
    }

    #[test]
    fn missing_data_is_refused() {
        assert_eq!(
            fields(json!({"type": "Secret", "name": "s", "mesh": "default"})),
            vec!["data"]
        );
    }

    #[test]
    fn bad_base64_and_unknown_field_are_reported_together() {
        assert_eq!(
            fields(json!({"type": "GlobalSecret", "name": "g", "data": "not base64!", "value": 1})),
            vec!["value", "data"]
        );
    }

    #[test]
    fn empty_data_is_refused() {
        assert_eq!(
            fields(json!({"type": "Secret", "name": "s", "data": ""})),
            vec!["data"]
        );
    }

    #[test]
    fn data_source_reports_every_problem() {
        let ds: DataSource =
            serde_json::from_value(json!({"secret": "", "inline": "%%"})).expect("typed");
        let mut v = Violations::new();
        ds.validate(&FieldPath::root().field("cert"), &mut v);
        let f: Vec<_> = v.iter().map(|x| x.field.as_str()).collect();
        assert_eq!(f, vec!["cert", "cert.secret", "cert.inline"]);
        let ok: DataSource = serde_json::from_value(json!({"inlineString": "PEM"})).expect("typed");
        assert_eq!(ok.source(), Some(DataSourceRef::InlineString("PEM")));
    }
}
