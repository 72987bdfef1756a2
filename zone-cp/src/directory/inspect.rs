//! The inspect API of the zone's dataplanes (`/meshes/{mesh}/dataplanes/_overview`, `_config`,
//! `_rules`): their stream status from the cache, and views rendered from a fresh build.

use std::time::SystemTime;

use async_trait::async_trait;
use chrono::Utc;
use serde_json::{Value, json};

use atoll_core::Kind;
use atoll_cp::extension::DataplaneInspector;
use atoll_store::ListFilter;

use super::cache::ProxyEntry;
use super::{ProxyKey, ZoneDirectory};
use crate::snapshot::build;

/// A proxy's stream status as the overview shows it.
fn status_json(entry: &ProxyEntry) -> Value {
    let build = entry.last.as_deref();
    let s = entry.status.lock().map(|s| s.clone()).unwrap_or_default();
    let time = |t: Option<SystemTime>| {
        t.map(|t| {
            chrono::DateTime::<Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        })
    };
    json!({
        "online": entry.online(),
        "connectedSince": time(s.connected_since),
        "disconnectedAt": time(s.disconnected_at),
        "lastSentVersion": s.last_sent_version,
        "lastAckedVersion": s.last_acked_version,
        "lastNack": s.last_nack.as_ref().map(|(v, m)| json!({"version": v, "message": m})),
        "responsesSent": s.responses_sent,
        "certificateExpiry": build.and_then(|b| b.cert.as_ref()).map(|c| c.issued.not_after.to_rfc3339()),
    })
}

#[async_trait]
impl DataplaneInspector for ZoneDirectory {
    async fn overview(&self, mesh: &str) -> Value {
        let list = self
            .store
            .list(&ListFilter::in_mesh(Kind::Dataplane, mesh))
            .await
            .map(|p| p.items)
            .unwrap_or_default();
        let mut items: Vec<Value> = self.cache.read(|entries| {
            list.iter()
                .map(|dp| {
                    let status = match entries.get(&ProxyKey::sidecar(mesh, &dp.name)) {
                        Some(e) => status_json(e),
                        None => json!({"online": false}),
                    };
                    json!({"mesh": mesh, "name": dp.name, "dataplane": dp.to_value(), "status": status})
                })
                .collect()
        });
        for item in &mut items {
            let name = item["name"].as_str().unwrap_or_default().to_string();
            if let Some(why) = self.index.unusable(mesh, &name).await {
                item["status"]["problems"] = json!([why]);
            }
        }
        json!({"total": items.len(), "items": items})
    }

    async fn config(&self, mesh: &str, name: &str) -> Option<Value> {
        // Kept builds hold only the encoded resources: render a fresh build, with the
        // certificate the proxy has (same inputs, same resources and versions).
        let previous = self.cache.last_build(&ProxyKey::sidecar(mesh, name));
        let cert = previous.as_ref().and_then(|b| b.cert.as_ref());
        build(&self.index, mesh, name, cert, self.clock.now())
            .await
            .ok()
            .map(|b| b.config_json())
    }

    async fn rules(&self, mesh: &str, name: &str) -> Option<Value> {
        // Kept builds do not hold the rules view: render a fresh build (see `config`).
        let previous = self.cache.last_build(&ProxyKey::sidecar(mesh, name));
        let cert = previous.as_ref().and_then(|b| b.cert.as_ref());
        build(&self.index, mesh, name, cert, self.clock.now())
            .await
            .ok()
            .map(|b| b.rules_json)
    }
}
