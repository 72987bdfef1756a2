//! Shared encoding of a resource into SQL column values and decoding back, for the SQL backends.
//!
//! Labels and the spec are stored as JSON text; the spec text is written by `serde_json` with
//! `preserve_order`, so reading it back yields the fields in the order they were written.

use std::collections::BTreeMap;

use atoll_core::resource::format_time;
use atoll_core::{Kind, Resource, ResourceKey};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::{Result, StoreError};

/// A stored row, as raw column values.
pub(crate) struct RawRow {
    pub kind: String,
    pub mesh: String,
    pub name: String,
    pub version: i64,
    pub labels: String,
    pub spec: String,
    pub creation_time: String,
    pub modification_time: String,
}

impl RawRow {
    fn corrupt(&self, reason: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            key: format!("{}/{}/{}", self.kind, self.mesh, self.name),
            reason: reason.into(),
        }
    }

    pub fn decode(self) -> Result<Resource> {
        let kind = Kind::from_name(&self.kind)
            .ok_or_else(|| self.corrupt(format!("unknown kind {:?}", self.kind)))?;
        let labels: BTreeMap<String, String> = serde_json::from_str(&self.labels)
            .map_err(|e| self.corrupt(format!("labels are not a map of strings: {e}")))?;
        let spec: Map<String, Value> = serde_json::from_str(&self.spec)
            .map_err(|e| self.corrupt(format!("spec is not a JSON object: {e}")))?;
        let creation_time = parse_time(&self.creation_time)
            .ok_or_else(|| self.corrupt(format!("bad creation time {:?}", self.creation_time)))?;
        let modification_time = parse_time(&self.modification_time).ok_or_else(|| {
            self.corrupt(format!(
                "bad modification time {:?}",
                self.modification_time
            ))
        })?;
        Ok(Resource {
            kind,
            mesh: self.mesh,
            name: self.name,
            labels,
            spec,
            version: self.version,
            creation_time: Some(creation_time),
            modification_time: Some(modification_time),
        })
    }
}

/// Column values of a resource being written.
pub(crate) struct Encoded {
    pub kind: &'static str,
    pub labels: String,
    pub spec: String,
}

pub(crate) fn encode(resource: &Resource) -> Result<Encoded> {
    let labels = serde_json::to_string(&resource.labels)
        .map_err(|e| StoreError::Backend(format!("cannot encode labels: {e}")))?;
    let spec = serde_json::to_string(&resource.spec)
        .map_err(|e| StoreError::Backend(format!("cannot encode spec: {e}")))?;
    Ok(Encoded {
        kind: resource.kind.name(),
        labels,
        spec,
    })
}

pub(crate) fn time_text(t: DateTime<Utc>) -> String {
    format_time(t)
}

pub(crate) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The error for a key a change event or row names with an unknown kind.
pub(crate) fn kind_of(name: &str, key: impl FnOnce() -> String) -> Result<Kind> {
    Kind::from_name(name).ok_or_else(|| StoreError::Corrupt {
        key: key(),
        reason: format!("unknown kind {name:?}"),
    })
}

/// Converts a page bound to SQL's signed integers (a bound past i64::MAX is as good as none).
pub(crate) fn sql_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn key_string(key: &ResourceKey) -> String {
    format!("{}/{}/{}", key.kind.name(), key.mesh, key.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> RawRow {
        RawRow {
            kind: "MeshTimeout".into(),
            mesh: "default".into(),
            name: "t".into(),
            version: 3,
            labels: r#"{"a":"b"}"#.into(),
            spec: r#"{"z":1,"a":{"y":2,"b":3}}"#.into(),
            creation_time: "2026-11-26T12:00:00.123456Z".into(),
            modification_time: "2026-11-26T12:00:01.000001Z".into(),
        }
    }

    #[test]
    fn decodes_a_row_keeping_spec_order() {
        let r = row().decode().expect("decodes");
        assert_eq!(r.kind, Kind::MeshTimeout);
        assert_eq!(r.version, 3);
        assert_eq!(r.labels.get("a").map(String::as_str), Some("b"));
        assert_eq!(
            serde_json::to_string(&r.spec).expect("json"),
            r#"{"z":1,"a":{"y":2,"b":3}}"#
        );
        assert_eq!(
            r.creation_time.map(time_text).as_deref(),
            Some("2026-11-26T12:00:00.123456Z")
        );
    }

    #[test]
    fn corrupt_rows_are_reported_not_panicked() {
        for broken in [
            RawRow {
                kind: "Nope".into(),
                ..row()
            },
            RawRow {
                labels: "[1]".into(),
                ..row()
            },
            RawRow {
                spec: "[]".into(),
                ..row()
            },
            RawRow {
                spec: "{".into(),
                ..row()
            },
            RawRow {
                creation_time: "yesterday".into(),
                ..row()
            },
        ] {
            match broken.decode() {
                Err(StoreError::Corrupt { key, .. }) => assert!(key.ends_with("/default/t")),
                other => panic!("expected Corrupt, got {other:?}"),
            }
        }
    }
}
