//! What the global knows of its zones' connections, in memory (per global instance): the zone
//! insights behind `GET /zones/_overview`.
//!
//! A zone control plane opens two streams per connection; both carry the same session id
//! (`x-atoll-zone-session`), which pairs them into one **subscription**, as Kuma calls a
//! connection in its `ZoneInsight`: connect and disconnect time, the zone's instance id and
//! version, which streams are open, and per-kind counters of each stream. A zone is **online**
//! while one of its subscriptions has both streams open. Open streams are counted, so a
//! reconnect that overlaps the old connection's teardown never takes a zone offline. The last
//! [`MAX_SUBSCRIPTIONS`] subscriptions of a zone are kept.
//!
//! A zone being deleted is marked here, so that connects are refused until the deletion is done.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use atoll_kds::stats::{KindStats, StreamStats, StreamStatsSnapshot};
use atoll_kds::transport::ZoneDescription;

/// Subscriptions kept per zone (the newest).
pub const MAX_SUBSCRIPTIONS: usize = 5;

/// Which streams of a zone are open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZoneLink {
    pub global_to_zone: usize,
    pub zone_to_global: usize,
}

impl ZoneLink {
    pub fn online(&self) -> bool {
        self.global_to_zone > 0 && self.zone_to_global > 0
    }

    fn any_open(&self) -> bool {
        self.global_to_zone > 0 || self.zone_to_global > 0
    }

    fn open(&self, g2z: bool) -> usize {
        if g2z {
            self.global_to_zone
        } else {
            self.zone_to_global
        }
    }

    fn count(&mut self, g2z: bool) -> &mut usize {
        if g2z {
            &mut self.global_to_zone
        } else {
            &mut self.zone_to_global
        }
    }
}

/// One connection of a zone control plane.
#[derive(Debug, Clone)]
struct Subscription {
    seq: u64,
    id: String,
    zone_instance_id: Option<String>,
    version: Option<String>,
    connect_time: DateTime<Utc>,
    disconnect_time: Option<DateTime<Utc>>,
    disconnect_reason: Option<String>,
    link: ZoneLink,
    global_to_zone: StreamStats,
    zone_to_global: StreamStats,
}

#[derive(Debug, Default)]
struct ZoneRecord {
    subscriptions: VecDeque<Subscription>,
    deleting: bool,
}

impl ZoneRecord {
    fn open_since(&self) -> Option<DateTime<Utc>> {
        self.subscriptions
            .iter()
            .filter(|s| s.link.any_open())
            .map(|s| s.connect_time)
            .min()
    }
}

#[derive(Debug, Default)]
struct Registry {
    zones: BTreeMap<String, ZoneRecord>,
    seq: u64,
}

/// An open stream, as registered: give it back to [`ZoneStatus::close_stream`].
#[derive(Debug)]
pub struct OpenStream {
    pub zone: String,
    seq: u64,
    g2z: bool,
    /// The stream's counters, for its sync loop.
    pub stats: StreamStats,
}

impl OpenStream {
    /// The `GlobalToZoneSync` stream (else `ZoneToGlobalSync`).
    pub fn g2z(&self) -> bool {
        self.g2z
    }
}

/// Why a stream was not registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenRefused {
    #[error(
        "zone {0:?} is being deleted on the global control plane; it can connect again (and is registered anew) once the deletion is done"
    )]
    Deleting(String),
}

/// Why a zone may not be deleted now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StillConnected {
    /// When its oldest open connection started.
    pub since: DateTime<Utc>,
}

/// The zones' connections, shared by the KDS server and the REST API.
#[derive(Debug, Clone)]
pub struct ZoneStatus {
    registry: Arc<Mutex<Registry>>,
    global_instance_id: Arc<str>,
}

impl Default for ZoneStatus {
    fn default() -> Self {
        Self::new("")
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn system_time(t: SystemTime) -> String {
    time(DateTime::<Utc>::from(t))
}

impl ZoneStatus {
    pub fn new(global_instance_id: &str) -> Self {
        Self {
            registry: Arc::default(),
            global_instance_id: global_instance_id.into(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A poisoned lock only means a panic elsewhere mid-update; the counters stay usable.
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Zone name -> open streams (summed over its connections).
    pub fn snapshot(&self) -> BTreeMap<String, ZoneLink> {
        self.lock()
            .zones
            .iter()
            .map(|(name, rec)| {
                let mut link = ZoneLink::default();
                for s in &rec.subscriptions {
                    link.global_to_zone += s.link.global_to_zone;
                    link.zone_to_global += s.link.zone_to_global;
                }
                (name.clone(), link)
            })
            .collect()
    }

    /// One of the zone's connections has both streams open.
    pub fn online(&self, zone: &str) -> bool {
        self.lock()
            .zones
            .get(zone)
            .is_some_and(|r| r.subscriptions.iter().any(|s| s.link.online()))
    }

    /// Registers an open stream of `zone`, pairing it with the other stream of its connection.
    pub fn open_stream(
        &self,
        zone: &str,
        description: &ZoneDescription,
        g2z: bool,
        now: DateTime<Utc>,
    ) -> Result<OpenStream, OpenRefused> {
        let mut reg = self.lock();
        reg.seq += 1;
        let seq = reg.seq;
        let rec = reg.zones.entry(zone.to_string()).or_default();
        if rec.deleting {
            return Err(OpenRefused::Deleting(zone.to_string()));
        }
        let id = description
            .session
            .clone()
            .or_else(|| description.instance_id.clone())
            .unwrap_or_else(|| format!("{zone}-{seq}"));
        let stats = StreamStats::new();
        let existing = rec
            .subscriptions
            .iter_mut()
            .find(|s| s.id == id && s.disconnect_time.is_none() && s.link.open(g2z) == 0);
        let sub = match existing {
            Some(s) => s,
            None => {
                rec.subscriptions.push_back(Subscription {
                    seq,
                    id,
                    zone_instance_id: description.instance_id.clone(),
                    version: description.version.clone(),
                    connect_time: now,
                    disconnect_time: None,
                    disconnect_reason: None,
                    link: ZoneLink::default(),
                    global_to_zone: StreamStats::new(),
                    zone_to_global: StreamStats::new(),
                });
                trim(&mut rec.subscriptions);
                rec.subscriptions
                    .back_mut()
                    .ok_or_else(|| OpenRefused::Deleting(zone.to_string()))?
            }
        };
        *sub.link.count(g2z) += 1;
        if g2z {
            sub.global_to_zone = stats.clone();
        } else {
            sub.zone_to_global = stats.clone();
        }
        Ok(OpenStream {
            zone: zone.to_string(),
            seq: sub.seq,
            g2z,
            stats,
        })
    }

    /// Unregisters a stream; the connection is over when neither stream is open. The first
    /// reason given for a connection is kept as its `disconnectReason`.
    pub fn close_stream(&self, stream: OpenStream, reason: Option<String>, now: DateTime<Utc>) {
        let mut reg = self.lock();
        let Some(sub) = reg
            .zones
            .get_mut(&stream.zone)
            .and_then(|r| r.subscriptions.iter_mut().find(|s| s.seq == stream.seq))
        else {
            return;
        };
        let n = sub.link.count(stream.g2z);
        *n = n.saturating_sub(1);
        if sub.disconnect_reason.is_none() {
            sub.disconnect_reason = reason;
        }
        if !sub.link.any_open() && sub.disconnect_time.is_none() {
            sub.disconnect_time = Some(now);
        }
    }

    /// Marks the zone as being deleted, unless one of its streams is open.
    pub fn begin_delete(&self, zone: &str) -> Result<(), StillConnected> {
        let mut reg = self.lock();
        let rec = reg.zones.entry(zone.to_string()).or_default();
        if let Some(since) = rec.open_since() {
            return Err(StillConnected { since });
        }
        rec.deleting = true;
        Ok(())
    }

    /// Ends a deletion: the zone may connect again. `deleted` forgets its history.
    pub fn end_delete(&self, zone: &str, deleted: bool) {
        let mut reg = self.lock();
        if deleted {
            reg.zones.remove(zone);
        } else if let Some(rec) = reg.zones.get_mut(zone) {
            rec.deleting = false;
        }
    }

    /// The zone's insight, as Kuma's `ZoneInsight` JSON (see the module documentation).
    pub fn insight(&self, zone: &str) -> Value {
        let reg = self.lock();
        let subs: Vec<Value> = reg
            .zones
            .get(zone)
            .map(|r| {
                r.subscriptions
                    .iter()
                    .map(|s| subscription_json(s, &self.global_instance_id))
                    .collect()
            })
            .unwrap_or_default();
        let online = reg
            .zones
            .get(zone)
            .is_some_and(|r| r.subscriptions.iter().any(|s| s.link.online()));
        json!({"online": online, "subscriptions": subs})
    }
}

/// Drops the oldest finished connections beyond the limit (open ones are never dropped).
fn trim(subs: &mut VecDeque<Subscription>) {
    while subs.len() > MAX_SUBSCRIPTIONS {
        match subs.iter().position(|s| !s.link.any_open()) {
            Some(i) => {
                subs.remove(i);
            }
            None => break,
        }
    }
}

fn subscription_json(s: &Subscription, global_instance_id: &str) -> Value {
    let mut v = json!({
        "id": s.id,
        "globalInstanceId": global_instance_id,
        "zoneInstanceId": s.zone_instance_id.clone().unwrap_or_default(),
        "connectTime": time(s.connect_time),
        "online": s.link.online(),
        "streams": {
            "globalToZone": s.link.global_to_zone > 0,
            "zoneToGlobal": s.link.zone_to_global > 0,
        },
        "version": {"kumaCp": {"version": s.version.clone().unwrap_or_default()}},
        "status": stats_json(&s.global_to_zone.snapshot()),
        "zoneToGlobalStatus": stats_json(&s.zone_to_global.snapshot()),
    });
    if let Some(t) = s.disconnect_time {
        v["disconnectTime"] = Value::String(time(t));
    }
    if let Some(r) = &s.disconnect_reason {
        v["disconnectReason"] = Value::String(r.clone());
    }
    v
}

/// Kuma's `KDSSubscriptionStatus`: `lastUpdateTime`, `total` and `stat` per kind; each with
/// Kuma's response counters plus resource counters and the last NACK's reason.
fn stats_json(s: &StreamStatsSnapshot) -> Value {
    let mut stat = Map::new();
    for (kind, k) in &s.kinds {
        stat.insert(kind.name().to_string(), counters_json(k));
    }
    let mut v = json!({"total": counters_json(&s.total()), "stat": stat});
    if let Some(t) = s.last_update {
        v["lastUpdateTime"] = Value::String(system_time(t));
    }
    v
}

fn counters_json(k: &KindStats) -> Value {
    let mut v = json!({
        "responsesSent": k.responses_sent,
        "responsesAcknowledged": k.responses_acknowledged,
        "responsesRejected": k.responses_rejected,
        "resourcesSent": k.resources_sent,
        "resourcesAcknowledged": k.resources_acknowledged,
        "resourcesRejected": k.resources_rejected,
    });
    if let Some(reason) = &k.last_nack {
        v["lastNackReason"] = Value::String(reason.clone());
    }
    if let Some(t) = k.last_nack_time {
        v["lastNackTime"] = Value::String(system_time(t));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0)
            .single()
            .expect("valid time")
    }

    fn described(session: &str) -> ZoneDescription {
        ZoneDescription {
            instance_id: Some("east-cp-abc".into()),
            version: Some("0.1.0".into()),
            session: Some(session.into()),
        }
    }

    #[test]
    fn both_streams_of_a_connection_make_one_online_subscription() {
        let status = ZoneStatus::new("global-1");
        let g2z = status
            .open_stream("east", &described("east-cp-abc/1"), true, at(0))
            .expect("open");
        assert!(!status.online("east"), "one stream is not online");
        let z2g = status
            .open_stream("east", &described("east-cp-abc/1"), false, at(1))
            .expect("open");
        assert!(status.online("east"));
        let insight = status.insight("east");
        assert_eq!(insight["online"], true);
        let subs = insight["subscriptions"].as_array().expect("list");
        assert_eq!(subs.len(), 1, "{insight}");
        let s = &subs[0];
        assert_eq!(s["globalInstanceId"], "global-1");
        assert_eq!(s["zoneInstanceId"], "east-cp-abc");
        assert_eq!(s["version"]["kumaCp"]["version"], "0.1.0");
        assert_eq!(s["connectTime"], "2023-11-14T22:13:20.000Z");
        assert!(s.get("disconnectTime").is_none());

        status.close_stream(z2g, Some("the zone token expired".into()), at(10));
        assert!(!status.online("east"));
        status.close_stream(g2z, None, at(11));
        let s = status.insight("east")["subscriptions"][0].clone();
        assert_eq!(s["online"], false);
        assert_eq!(s["disconnectTime"], "2023-11-14T22:13:31.000Z");
        assert_eq!(s["disconnectReason"], "the zone token expired");
    }

    #[test]
    fn a_reconnect_overlapping_the_old_connection_stays_online() {
        let status = ZoneStatus::new("g");
        let old_a = status
            .open_stream("east", &described("s/1"), true, at(0))
            .expect("open");
        let old_b = status
            .open_stream("east", &described("s/1"), false, at(0))
            .expect("open");
        let new_a = status
            .open_stream("east", &described("s/2"), true, at(5))
            .expect("open");
        let _new_b = status
            .open_stream("east", &described("s/2"), false, at(5))
            .expect("open");
        status.close_stream(old_a, None, at(6));
        status.close_stream(old_b, None, at(6));
        assert!(status.online("east"));
        let subs = status.insight("east")["subscriptions"].clone();
        assert_eq!(subs.as_array().map(Vec::len), Some(2));
        assert_eq!(subs[1]["id"], "s/2");
        assert_eq!(subs[1]["online"], true);
        assert_eq!(status.snapshot()["east"].global_to_zone, 1);
        drop(new_a);
    }

    #[test]
    fn old_subscriptions_are_trimmed() {
        let status = ZoneStatus::new("g");
        for i in 0..(MAX_SUBSCRIPTIONS as i64 + 3) {
            let s = described(&format!("s/{i}"));
            let a = status.open_stream("east", &s, true, at(i)).expect("open");
            let b = status.open_stream("east", &s, false, at(i)).expect("open");
            status.close_stream(a, None, at(i));
            status.close_stream(b, None, at(i));
        }
        let subs = status.insight("east")["subscriptions"].clone();
        let ids: Vec<&str> = subs
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|s| s["id"].as_str())
            .collect();
        assert_eq!(ids, ["s/3", "s/4", "s/5", "s/6", "s/7"]);
    }

    #[test]
    fn a_connected_zone_cannot_be_deleted_and_a_deleting_zone_cannot_connect() {
        let status = ZoneStatus::new("g");
        let a = status
            .open_stream("east", &described("s/1"), true, at(3))
            .expect("open");
        // Half-connected is not online, but still refused: its stream would resync.
        assert_eq!(
            status.begin_delete("east"),
            Err(StillConnected { since: at(3) })
        );
        status.close_stream(a, None, at(4));
        status.begin_delete("east").expect("offline zone may go");
        let refused = status
            .open_stream("east", &described("s/2"), true, at(5))
            .expect_err("refused while deleting");
        assert!(refused.to_string().contains("being deleted"), "{refused}");
        status.end_delete("east", true);
        assert_eq!(status.insight("east")["subscriptions"], json!([]));
        status
            .open_stream("east", &described("s/3"), true, at(6))
            .expect("may connect again");
    }

    #[test]
    fn stream_counters_show_per_kind() {
        use atoll_core::Kind;
        use atoll_kds::wire::type_url;
        use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryResponse;
        let status = ZoneStatus::new("g");
        let a = status
            .open_stream("east", &described("s/1"), true, at(0))
            .expect("open");
        a.stats.on_sent(&DeltaDiscoveryResponse {
            type_url: type_url(Kind::Mesh),
            nonce: "1".into(),
            removed_resources: vec!["old".into()],
            ..Default::default()
        });
        let s = status.insight("east")["subscriptions"][0].clone();
        assert_eq!(s["status"]["stat"]["Mesh"]["resourcesSent"], 1, "{s}");
        assert_eq!(s["status"]["total"]["responsesSent"], 1, "{s}");
        assert!(s["status"]["lastUpdateTime"].is_string(), "{s}");
        assert_eq!(s["zoneToGlobalStatus"]["stat"], json!({}));
    }
}
