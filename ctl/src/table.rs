//! Tables in the style of kumactl: one row per resource, the columns an operator scans for.

use chrono::{DateTime, Utc};
use serde_json::Value;

use atoll_core::Kind;
use atoll_core::labels::{DISPLAY_NAME_LABEL, ZONE_LABEL};

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
                "ZONE",
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
                        display_name(r),
                        zone_of(r),
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

/// Zone overviews (`GET /zones/_overview` on global) as kumactl shows zones: whether each is
/// online, since when it is connected or when it was last seen, and its control plane's version.
pub fn zone_overviews(items: &[Value]) -> String {
    zone_overviews_at(items, Utc::now())
}

fn zone_overviews_at(items: &[Value], now: DateTime<Utc>) -> String {
    let header = vec![
        "NAME",
        "STATUS",
        "CONNECTED",
        "LAST SEEN",
        "ZONE CP VERSION",
        "ENABLED",
    ];
    let rows = items
        .iter()
        .map(|o| {
            let online = o.pointer("/zoneInsight/online").and_then(Value::as_bool) == Some(true);
            let subs = o
                .pointer("/zoneInsight/subscriptions")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let latest = subs.last();
            let current = subs
                .iter()
                .rev()
                .find(|s| s.get("online").and_then(Value::as_bool) == Some(true));
            let connected = match current.and_then(|s| s.get("connectTime")) {
                Some(t) if online => since(t, now).map_or("-".into(), |d| format!("{d} ago")),
                _ => "-".to_string(),
            };
            let last_seen = if online {
                "now".to_string()
            } else {
                latest
                    .and_then(|s| s.get("disconnectTime"))
                    .and_then(|t| since(t, now))
                    .map_or_else(|| "never".to_string(), |d| format!("{d} ago"))
            };
            let version = current
                .or(latest)
                .and_then(|s| s.pointer("/version/kumaCp/version"))
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .unwrap_or("-")
                .to_string();
            vec![
                s(o, &["name"]),
                if online { "Online" } else { "Offline" }.to_string(),
                connected,
                last_seen,
                version,
                (o.pointer("/zone/enabled").and_then(Value::as_bool) != Some(false)).to_string(),
            ]
        })
        .collect::<Vec<_>>();
    align(&header, &rows)
}

/// Adds each dataplane's live status (from `_overview`) under `_status` for the table.
/// The name an operator wrote: synced copies carry it in `kuma.io/display-name` (their own
/// name has the source zone's hash suffix).
fn display_name(r: &Value) -> String {
    let shown = s(r, &["labels", DISPLAY_NAME_LABEL]);
    if shown.is_empty() {
        s(r, &["name"])
    } else {
        shown
    }
}

/// The zone a resource lives in: its `kuma.io/zone` label, or the zone of the control plane
/// that listed it (`_zone`, see [`attach_local_zone`]) for one created there.
fn zone_of(r: &Value) -> String {
    let labelled = s(r, &["labels", ZONE_LABEL]);
    if labelled.is_empty() {
        s(r, &["_zone"])
    } else {
        labelled
    }
}

/// Marks resources without a zone label as the listing zone control plane's own.
pub fn attach_local_zone(items: &mut [Value], zone: &str) {
    for item in items.iter_mut() {
        if item.get("labels").and_then(|l| l.get(ZONE_LABEL)).is_none() {
            item["_zone"] = Value::String(zone.to_string());
        }
    }
}

/// The one resource among `items` whose display name (the name in its zone) is `name`; an error
/// naming the candidates when several zones have one.
pub fn find_by_display_name<'a>(
    items: &'a [Value],
    name: &str,
) -> Result<Option<&'a Value>, String> {
    let found: Vec<&Value> = items
        .iter()
        .filter(|r| {
            r.get("labels")
                .and_then(|l| l.get(DISPLAY_NAME_LABEL))
                .and_then(Value::as_str)
                == Some(name)
        })
        .collect();
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        many => Err(format!(
            "{name:?} names {} resources, one per zone; use the full name of one: {}",
            many.len(),
            many.iter()
                .map(|r| format!("{} (zone {})", s(r, &["name"]), zone_of(r)))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

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
    r.get("creationTime")
        .and_then(|t| since(t, now))
        .unwrap_or_default()
}

/// How long ago an RFC 3339 time was, as `42s`, `5m`, `3h` or `2d`.
fn since(t: &Value, now: DateTime<Utc>) -> Option<String> {
    let t = DateTime::parse_from_rfc3339(t.as_str()?).ok()?;
    let secs = (now - t.with_timezone(&Utc)).num_seconds().max(0);
    Some(match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    })
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
    fn zone_table_shows_status_connection_and_version() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let items = vec![
            json!({"type": "ZoneOverview", "name": "east", "zone": {"enabled": true},
                "zoneInsight": {"online": true, "subscriptions": [
                    {"connectTime": "2026-01-01T10:00:00Z", "disconnectTime": "2026-01-01T11:00:00Z",
                     "online": false, "version": {"kumaCp": {"version": "0.0.9"}}},
                    {"connectTime": "2026-01-01T11:55:00Z", "online": true,
                     "version": {"kumaCp": {"version": "0.1.0"}}}]}}),
            json!({"type": "ZoneOverview", "name": "west", "zone": {"enabled": false},
                "zoneInsight": {"online": false, "subscriptions": [
                    {"connectTime": "2026-01-01T09:00:00Z", "disconnectTime": "2026-01-01T11:59:30Z",
                     "online": false, "version": {"kumaCp": {"version": "0.1.0"}}}]}}),
            json!({"type": "ZoneOverview", "name": "south", "zone": {"enabled": true},
                "zoneInsight": {"online": false, "subscriptions": []}}),
        ];
        let out = zone_overviews_at(&items, now);
        let rows: Vec<Vec<&str>> = out
            .lines()
            .map(|l| {
                l.split("   ")
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect()
            })
            .collect();
        assert_eq!(
            rows,
            [
                vec![
                    "NAME",
                    "STATUS",
                    "CONNECTED",
                    "LAST SEEN",
                    "ZONE CP VERSION",
                    "ENABLED"
                ],
                vec!["east", "Online", "5m ago", "now", "0.1.0", "true"],
                vec!["west", "Offline", "-", "30s ago", "0.1.0", "false"],
                vec!["south", "Offline", "-", "never", "-", "true"],
            ],
            "{out}"
        );
    }

    #[test]
    fn dataplane_table_names_the_zone_when_there_is_one() {
        let items = vec![
            json!({"type": "Dataplane", "mesh": "default", "name": "web-1-abc",
                "labels": {"kuma.io/zone": "east", "kuma.io/origin": "zone"},
                "networking": {"address": "10.0.0.1"}}),
            json!({"type": "Dataplane", "mesh": "default", "name": "local",
                "networking": {"address": "10.0.0.2"}}),
        ];
        let out = render(Kind::Dataplane, &items);
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines[0].starts_with("MESH      NAME        ZONE   STATUS"),
            "{out}"
        );
        assert!(lines[1].contains("web-1-abc   east   -"), "{out}");
        assert!(lines[2].contains("local              -"), "{out}");
    }

    #[test]
    fn synced_dataplanes_show_their_zone_side_name_and_local_ones_the_listing_zone() {
        let mut items = vec![
            json!({"type": "Dataplane", "mesh": "default", "name": "web-1-7c9f2d",
                "labels": {"kuma.io/zone": "zone-1", "kuma.io/origin": "zone",
                    "kuma.io/display-name": "web-1"},
                "networking": {"address": "10.0.0.1"}}),
            json!({"type": "Dataplane", "mesh": "default", "name": "backend-1",
                "networking": {"address": "10.0.0.2"}}),
        ];
        attach_local_zone(&mut items, "zone-2");
        let out = render(Kind::Dataplane, &items);
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines[1].starts_with("default   web-1       zone-1"),
            "{out}"
        );
        assert!(
            lines[2].starts_with("default   backend-1   zone-2"),
            "{out}"
        );
    }

    #[test]
    fn a_display_name_finds_the_synced_copy_or_names_every_candidate() {
        let copy = |name: &str, zone: &str| {
            json!({"type": "Dataplane", "mesh": "default", "name": name,
                "labels": {"kuma.io/zone": zone, "kuma.io/display-name": "web-1"}})
        };
        let one = vec![copy("web-1-aaa", "zone-1")];
        let found = find_by_display_name(&one, "web-1").expect("one match");
        assert_eq!(found.and_then(|r| r["name"].as_str()), Some("web-1-aaa"));
        assert!(matches!(find_by_display_name(&one, "api-1"), Ok(None)));
        let two = vec![copy("web-1-aaa", "zone-1"), copy("web-1-bbb", "zone-2")];
        let err = find_by_display_name(&two, "web-1").expect_err("ambiguous");
        assert!(
            err.contains("web-1-aaa (zone zone-1)") && err.contains("web-1-bbb (zone zone-2)"),
            "{err}"
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
