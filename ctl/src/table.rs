//! Tables in the style of kumactl: one row per resource, the columns an operator scans for.

use chrono::{DateTime, Utc};
use serde_json::Value;

use atoll_core::Kind;

/// Renders resources of one kind as an aligned table.
pub fn render(kind: Kind, items: &[Value]) -> String {
    let now = Utc::now();
    let (header, rows): (Vec<&str>, Vec<Vec<String>>) = match kind {
        Kind::Mesh => (
            vec!["NAME", "mTLS", "LOCALITY", "ZONEEGRESS", "AGE"],
            items
                .iter()
                .map(|r| {
                    vec![
                        s(r, &["name"]),
                        mesh_mtls(r),
                        on_off(r.pointer("/routing/localityAwareLoadBalancing")),
                        on_off(r.pointer("/routing/zoneEgress")),
                        age(r, now),
                    ]
                })
                .collect(),
        ),
        Kind::Dataplane => (
            vec![
                "MESH",
                "NAME",
                "STATUS",
                "ADDRESS",
                "TAGS",
                "CERT EXPIRY",
                "AGE",
            ],
            items
                .iter()
                .map(|r| {
                    vec![
                        s(r, &["mesh"]),
                        s(r, &["name"]),
                        match r.pointer("/_status/online").and_then(Value::as_bool) {
                            Some(true) => "Online".to_string(),
                            Some(false) => "Offline".to_string(),
                            None => "-".to_string(),
                        },
                        s(r, &["networking", "address"]),
                        dataplane_tags(r),
                        r.pointer("/_status/certificateExpiry")
                            .and_then(Value::as_str)
                            .unwrap_or("-")
                            .to_string(),
                        age(r, now),
                    ]
                })
                .collect(),
        ),
        Kind::Zone => (
            vec!["NAME", "ENABLED", "AGE"],
            items
                .iter()
                .map(|r| {
                    vec![
                        s(r, &["name"]),
                        r.get("enabled")
                            .and_then(Value::as_bool)
                            .unwrap_or(true)
                            .to_string(),
                        age(r, now),
                    ]
                })
                .collect(),
        ),
        Kind::ZoneIngress | Kind::ZoneEgress => (
            vec!["NAME", "ZONE", "ADDRESS", "AGE"],
            items
                .iter()
                .map(|r| {
                    vec![
                        s(r, &["name"]),
                        s(r, &["zone"]),
                        format!(
                            "{}:{}",
                            s(r, &["networking", "address"]),
                            s(r, &["networking", "port"])
                        ),
                        age(r, now),
                    ]
                })
                .collect(),
        ),
        k if k.is_policy() => (
            vec!["MESH", "NAME", "TARGETREF KIND", "TARGETREF NAME", "AGE"],
            items
                .iter()
                .map(|r| {
                    vec![
                        s(r, &["mesh"]),
                        s(r, &["name"]),
                        r.pointer("/spec/targetRef/kind")
                            .and_then(Value::as_str)
                            .unwrap_or("Mesh")
                            .to_string(),
                        s(r, &["spec", "targetRef", "name"]),
                        age(r, now),
                    ]
                })
                .collect(),
        ),
        k if k.is_mesh_scoped() => (
            vec!["MESH", "NAME", "AGE"],
            items
                .iter()
                .map(|r| vec![s(r, &["mesh"]), s(r, &["name"]), age(r, now)])
                .collect(),
        ),
        _ => (
            vec!["NAME", "AGE"],
            items
                .iter()
                .map(|r| vec![s(r, &["name"]), age(r, now)])
                .collect(),
        ),
    };
    align(&header, &rows)
}

/// Adds each dataplane's live status (from `_overview`) under `_status` for the table.
pub fn attach_status(items: &mut [Value], overview: &Value) {
    let Some(list) = overview.get("items").and_then(Value::as_array) else {
        return;
    };
    for item in items.iter_mut() {
        let name = item.get("name").cloned();
        if let Some(status) = list
            .iter()
            .find(|o| o.get("name") == name.as_ref())
            .and_then(|o| o.get("status"))
        {
            item["_status"] = status.clone();
        }
    }
}

fn align(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}   ", w = widths[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn s(r: &Value, path: &[&str]) -> String {
    let mut cur = r;
    for p in path {
        match cur.get(p) {
            Some(next) => cur = next,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(x) => x.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn on_off(v: Option<&Value>) -> String {
    if v.and_then(Value::as_bool).unwrap_or(false) {
        "on"
    } else {
        "off"
    }
    .to_string()
}

fn mesh_mtls(r: &Value) -> String {
    let Some(enabled) = r.pointer("/mtls/enabledBackend").and_then(Value::as_str) else {
        return "off".into();
    };
    let backend_type = r
        .pointer("/mtls/backends")
        .and_then(Value::as_array)
        .and_then(|bs| {
            bs.iter()
                .find(|b| b.get("name").and_then(Value::as_str) == Some(enabled))
        })
        .and_then(|b| b.get("type").and_then(Value::as_str))
        .unwrap_or("?");
    format!("{backend_type}/{enabled}")
}

fn dataplane_tags(r: &Value) -> String {
    let mut tags: Vec<String> = Vec::new();
    for inbound in r
        .pointer("/networking/inbound")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(map) = inbound.get("tags").and_then(Value::as_object) {
            for (k, v) in map {
                let t = format!("{k}={}", v.as_str().unwrap_or(""));
                if !tags.contains(&t) {
                    tags.push(t);
                }
            }
        }
    }
    tags.join(" ")
}

fn age(r: &Value, now: DateTime<Utc>) -> String {
    let Some(created) = r
        .get("creationTime")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
    else {
        return String::new();
    };
    let secs = (now - created.with_timezone(&Utc)).num_seconds().max(0);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn policy_table_shows_target_ref() {
        let items = vec![json!({
            "type": "MeshTimeout", "mesh": "default", "name": "t1",
            "spec": {"targetRef": {"kind": "MeshService", "name": "backend"}}
        })];
        let out = render(Kind::MeshTimeout, &items);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("MESH"), "{out}");
        assert!(
            lines[1].contains("MeshService") && lines[1].contains("backend"),
            "{out}"
        );
    }

    #[test]
    fn mesh_table_shows_mtls_backend() {
        let items = vec![json!({
            "type": "Mesh", "name": "default",
            "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}
        })];
        assert!(render(Kind::Mesh, &items).contains("builtin/ca-1"));
    }
}
