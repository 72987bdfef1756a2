//! Zones as an operator sees them on global, in-process (global and zone control planes talking
//! KDS over TLS on loopback): the zone overview (online, connect and disconnect times, the zone
//! control plane's instance and version, per-kind counters with NACK reasons), zone deletion
//! (refused while online; an offline zone's resources go, on global and in the other zones),
//! and credentials that stop holding while connected (an expiring token, a new signing key, a
//! disabled Zone) ending the zone's streams with a reason both sides log. Every wait is bounded.

use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};

use atoll_kds::naming::hashed_name;
use atoll_test_support::in_process::*;
use atoll_test_support::{PATIENCE, eventually};

fn subscription(overview: &Value) -> Value {
    overview["zoneInsight"]["subscriptions"]
        .as_array()
        .and_then(|s| s.last())
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_overview_shows_connection_instance_version_and_counters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gdir = dir.path().join("global");
    let (mut global, kds) = start_global_with_mesh(&gdir).await;
    global
        .put(
            "/meshes/default/meshtrafficpermissions/allow-all",
            allow_all_permission("allow-all"),
        )
        .await;
    let token = zone_token(&global, "east").await;
    let mut zone = start_zone(dir.path(), "east", kds, &gdir, &token).await;

    let o = wait_online(&global, "east", true).await;
    assert_eq!(o["type"], "ZoneOverview");
    assert_eq!(o["name"], "east");
    assert_eq!(o["zone"]["enabled"], true);
    let (_, zone_index) = zone.get("/").await;
    let (_, global_index) = global.get("/").await;
    let s = subscription(&o);
    assert_eq!(s["zoneInstanceId"], zone_index["instanceId"], "{s}");
    assert_eq!(s["globalInstanceId"], global_index["instanceId"], "{s}");
    assert_eq!(
        s["version"]["kumaCp"]["version"],
        env!("CARGO_PKG_VERSION"),
        "{s}"
    );
    assert!(s["connectTime"].is_string(), "{s}");
    assert!(s.get("disconnectTime").is_none(), "{s}");

    // Global -> zone: the Mesh and the policy were sent and acknowledged.
    let s = eventually("the policy acknowledged by the zone", PATIENCE, || async {
        let s = subscription(&overview(&global, "east").await);
        let p = &s["status"]["stat"]["MeshTrafficPermission"];
        (p["resourcesAcknowledged"] == 1
            && s["status"]["stat"]["Mesh"]["resourcesAcknowledged"] == 1)
            .then_some(s)
    })
    .await;
    assert_eq!(
        s["status"]["stat"]["MeshTrafficPermission"]["resourcesSent"],
        1
    );
    assert_eq!(s["status"]["total"]["resourcesRejected"], 0, "{s}");

    // Zone -> global: a dataplane registered on the zone is counted on global.
    zone.put(
        "/meshes/default/dataplanes/dp-1",
        backend_dataplane("dp-1", "10.0.0.1"),
    )
    .await;
    eventually("the dataplane acknowledged by global", PATIENCE, || async {
        let s = subscription(&overview(&global, "east").await);
        (s["zoneToGlobalStatus"]["stat"]["Dataplane"]["resourcesAcknowledged"] == 1).then_some(())
    })
    .await;

    // A policy the zone refuses (it holds a resource of its own under the synced name) is
    // counted as NACKed, with the zone's reason.
    let clash = hashed_name("default", "deny-all", &[]);
    zone.put(
        &format!("/meshes/default/meshtrafficpermissions/{clash}"),
        allow_all_permission(&clash),
    )
    .await;
    global
        .put(
            "/meshes/default/meshtrafficpermissions/deny-all",
            allow_all_permission("deny-all"),
        )
        .await;
    let stat = eventually("the refused policy counted", PATIENCE, || async {
        let s = subscription(&overview(&global, "east").await);
        let stat = s["status"]["stat"]["MeshTrafficPermission"].clone();
        (stat["resourcesRejected"] == 1).then_some(stat)
    })
    .await;
    let reason = stat["lastNackReason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&clash) && reason.contains("exists here"),
        "{stat}"
    );

    // The list answers Kuma's shape; unknown zones and zone control planes answer clearly.
    let (status, list) = global.get("/zones/_overview").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["items"][0]["name"], "east");
    let (status, body) = global.get("/zones/nowhere/_overview").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = zone.get("/zones/_overview").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["details"]
            .as_str()
            .unwrap_or_default()
            .contains("global control plane"),
        "{body}"
    );

    // The zone goes away: offline, with the time it left.
    zone.stop().await;
    wait_online(&global, "east", false).await;
    let s = eventually("the connection's end recorded", PATIENCE, || async {
        let s = subscription(&overview(&global, "east").await);
        s["disconnectTime"].is_string().then_some(s)
    })
    .await;
    assert_eq!(s["online"], false);
    assert_eq!(
        s["streams"],
        json!({"globalToZone": false, "zoneToGlobal": false})
    );
    global.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_zone_is_refused_while_online_and_takes_its_resources_when_offline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gdir = dir.path().join("global");
    let (mut global, kds) = start_global_with_mesh(&gdir).await;
    let east_token = zone_token(&global, "east").await;
    let west_token = zone_token(&global, "west").await;
    let mut east = start_zone(dir.path(), "east", kds, &gdir, &east_token).await;
    let mut west = start_zone(dir.path(), "west", kds, &gdir, &west_token).await;
    eventually("the Mesh in east", PATIENCE, || async {
        (east.get("/meshes/default").await.0 == 200).then_some(())
    })
    .await;
    east.put(
        "/meshes/default/dataplanes/dp-1",
        backend_dataplane("dp-1", "10.0.0.1"),
    )
    .await;
    east.put(
        "/zoneingresses/ingress",
        json!({"type": "ZoneIngress", "name": "ingress", "networking": {
            "address": "10.0.0.5", "port": 10001,
            "advertisedAddress": "192.0.2.5", "advertisedPort": 30001}}),
    )
    .await;
    east.put(
        "/meshes/default/meshservices/backend",
        json!({"type": "MeshService", "name": "backend", "mesh": "default", "spec": {
            "selector": {"dataplaneTags": {"kuma.io/service": "backend"}},
            "ports": [{"port": 8080, "targetPort": 8081, "appProtocol": "tcp"}]}}),
    )
    .await;
    let relayed_ingress = hashed_name("", "ingress", &["east"]);
    let relayed_service = hashed_name("default", "backend", &["east"]);
    eventually(
        "east's ingress and service relayed to west",
        PATIENCE,
        || async {
            let ingress = west
                .get(&format!("/zoneingresses/{relayed_ingress}"))
                .await
                .0;
            let service = west
                .get(&format!("/meshes/default/meshservices/{relayed_service}"))
                .await
                .0;
            (ingress == 200 && service == 200).then_some(())
        },
    )
    .await;
    eventually("east's dataplane on global", PATIENCE, || async {
        (global.items("/meshes/default/dataplanes").await.len() == 1).then_some(())
    })
    .await;
    wait_online(&global, "east", true).await;

    // Online: refused, naming the zone; nothing removed.
    let (status, body) = global.try_delete("/zones/east").await;
    assert_eq!(status, 409, "{body}");
    let details = body["details"].as_str().unwrap_or_default();
    assert!(details.contains("\"east\" is online"), "{body}");
    assert_eq!(global.items("/meshes/default/dataplanes").await.len(), 1);

    // Offline: the zone and everything it owned go, on global and in west.
    east.stop().await;
    wait_online(&global, "east", false).await;
    let (status, body) = global.try_delete("/zones/east").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["resourcesRemoved"], 3, "{body}");
    assert!(global.items("/meshes/default/dataplanes").await.is_empty());
    assert!(global.items("/zoneingresses").await.is_empty());
    assert!(
        global
            .items("/meshes/default/meshservices")
            .await
            .is_empty()
    );
    let zones: Vec<Value> = global.items("/zones").await;
    let names: Vec<&str> = zones.iter().filter_map(|z| z["name"].as_str()).collect();
    assert_eq!(names, ["west"]);
    eventually(
        "east's relayed resources gone from west",
        PATIENCE,
        || async {
            let ingress = west
                .get(&format!("/zoneingresses/{relayed_ingress}"))
                .await
                .0;
            let service = west
                .get(&format!("/meshes/default/meshservices/{relayed_service}"))
                .await
                .0;
            (ingress == 404 && service == 404).then_some(())
        },
    )
    .await;
    // West is untouched otherwise and still online.
    assert_eq!(west.get("/meshes/default").await.0, 200);
    assert_eq!(
        overview(&global, "west").await["zoneInsight"]["online"],
        true
    );

    west.stop().await;
    global.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_token_ends_the_streams_and_the_same_token_is_refused_again() {
    let logs = capture_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let gdir = dir.path().join("global");
    let (mut global, kds) = start_global_with_mesh(&gdir).await;
    // Valid (with the verifier's 30 s leeway) for about four more seconds.
    let valid_for = Duration::from_secs(3600);
    let issued = Utc::now() - chrono::Duration::seconds(3600 + 30 - 4);
    let token = zone_token_at(&global, "expiring", valid_for, issued).await;
    let mut zone = start_zone(dir.path(), "expiring", kds, &gdir, &token).await;
    wait_online(&global, "expiring", true).await;

    let o = wait_online(&global, "expiring", false).await;
    let reason = subscription(&o)["disconnectReason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(reason.contains("token expired"), "{o}");
    // Both sides said so, and the zone's next attempt with the same token was refused too.
    eventually("global's and the zone's log lines", PATIENCE, || async {
        let ended = logs.lines_with(&["ended a zone's KDS stream", "expiring", "token expired"]);
        let refused = logs.lines_with(&["global refused the zone token", "token expired"]);
        let again = logs.lines_with(&[
            "refused a zone's KDS connection",
            "expiring",
            "token expired",
        ]);
        (!ended.is_empty() && refused.len() >= 2 && !again.is_empty()).then_some(())
    })
    .await;
    assert!(
        !overview(&global, "expiring").await["zoneInsight"]["online"]
            .as_bool()
            .unwrap_or(true)
    );

    zone.stop().await;
    global.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_zone_token_signing_key_ends_the_streams() {
    let logs = capture_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let gdir = dir.path().join("global");
    let (mut global, kds) = start_global_with_mesh(&gdir).await;
    let token = zone_token(&global, "rotated").await;
    let mut zone = start_zone(dir.path(), "rotated", kds, &gdir, &token).await;
    wait_online(&global, "rotated", true).await;

    // The key cannot be deleted or overwritten through the generic API (that locked zones
    // out); the operator rotates it explicitly.
    let (status, body) = global
        .try_delete("/global-secrets/zone-token-signing-key")
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = global
        .post("/tokens/zone/_rotate-signing-key", serde_json::json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let fresh = zone_token(&global, "other").await;
    assert!(!fresh.is_empty());
    let o = wait_online(&global, "rotated", false).await;
    let reason = subscription(&o)["disconnectReason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(reason.contains("zone token refused"), "{o}");
    eventually("the zone's log line", PATIENCE, || async {
        (!logs
            .lines_with(&["global refused the zone token", "rotated"])
            .is_empty())
        .then_some(())
    })
    .await;

    zone.stop().await;
    global.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_zone_is_refused_and_disabling_a_connected_zone_disconnects_it() {
    let logs = capture_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let gdir = dir.path().join("global");
    let (mut global, kds) = start_global_with_mesh(&gdir).await;

    // Disabled before it ever connects: refused, and nothing syncs.
    global
        .put(
            "/zones/north",
            json!({"type": "Zone", "name": "north", "enabled": false}),
        )
        .await;
    let token = zone_token(&global, "north").await;
    let mut north = start_zone(dir.path(), "north", kds, &gdir, &token).await;
    eventually("the zone's log line", PATIENCE, || async {
        (!logs
            .lines_with(&["global refused this zone", "\\\"north\\\" is disabled"])
            .is_empty()
            || !logs
                .lines_with(&["global refused this zone", "north", "is disabled"])
                .is_empty())
        .then_some(())
    })
    .await;
    assert_eq!(north.get("/meshes/default").await.0, 404);
    let o = overview(&global, "north").await;
    assert_eq!(o["zone"]["enabled"], false);
    assert_eq!(o["zoneInsight"]["online"], false);

    // Enabled: it connects; disabled again: its streams end with the reason.
    global
        .put(
            "/zones/north",
            json!({"type": "Zone", "name": "north", "enabled": true}),
        )
        .await;
    wait_online(&global, "north", true).await;
    global
        .put(
            "/zones/north",
            json!({"type": "Zone", "name": "north", "enabled": false}),
        )
        .await;
    let o = wait_online(&global, "north", false).await;
    let reason = subscription(&o)["disconnectReason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(reason.contains("disabled"), "{o}");
    // Offline and disabled, it can be deleted.
    let (status, body) = global.try_delete("/zones/north").await;
    assert_eq!(status, 200, "{body}");

    north.stop().await;
    global.stop().await;
}
