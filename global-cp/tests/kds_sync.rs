//! KDS end to end, in-process: a global control plane (with its KDS hook) and zone control planes
//! (with theirs) on loopback ports chosen at run time, talking gRPC over TLS. What an operator
//! would notice: policies written on global reach the zones under their synced names, the
//! zones' dataplanes reach global with their zone label and register the zone, a zone with a
//! token for another zone gets nothing, a global restart loses and duplicates nothing, and a
//! delete on global removes the zone's copy. Every wait is bounded; nothing sleeps to assert.

use std::time::Duration;

use chrono::Utc;
use serde_json::Value;

use atoll_cp::ConfigArgs;
use atoll_identity::Scope;
use atoll_kds::naming::hashed_name;
use atoll_test_support::in_process::*;
use atoll_test_support::{PATIENCE, eventually};

/// The dataplanes global holds from `zone`, by display name.
async fn zone_dataplanes(global: &Cp, zone: &str) -> Vec<(String, Value)> {
    global
        .items("/meshes/default/dataplanes")
        .await
        .into_iter()
        .filter(|d| d["labels"]["kuma.io/zone"] == zone)
        .map(|d| {
            (
                d["labels"]["kuma.io/display-name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                d,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_flow_down_dataplanes_flow_up_and_deletes_follow() {
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

    // (a) The Mesh keeps its name; the policy gets the hashed name and the KDS labels.
    let mesh = eventually("the Mesh on the zone", PATIENCE, || async {
        let (s, b) = zone.get("/meshes/default").await;
        (s == 200).then_some(b)
    })
    .await;
    assert_eq!(mesh["labels"]["kuma.io/origin"], "global", "{mesh}");
    let synced = hashed_name("default", "allow-all", &[]);
    let policy = eventually("the policy on the zone", PATIENCE, || async {
        let (s, b) = zone
            .get(&format!("/meshes/default/meshtrafficpermissions/{synced}"))
            .await;
        (s == 200).then_some(b)
    })
    .await;
    assert_eq!(policy["labels"]["kuma.io/origin"], "global", "{policy}");
    assert_eq!(
        policy["labels"]["kuma.io/display-name"], "allow-all",
        "{policy}"
    );
    assert_eq!(policy["spec"]["from"][0]["default"]["action"], "Allow");

    // (b) A dataplane registered on the zone reaches global, and the zone is listed.
    zone.put(
        "/meshes/default/dataplanes/dp-1",
        backend_dataplane("dp-1", "10.0.0.1"),
    )
    .await;
    let on_global = eventually("the dataplane on global", PATIENCE, || async {
        zone_dataplanes(&global, "east").await.into_iter().next()
    })
    .await;
    assert_eq!(on_global.0, "dp-1");
    assert_eq!(on_global.1["labels"]["kuma.io/origin"], "zone");
    assert_eq!(
        on_global.1["name"],
        hashed_name("default", "dp-1", &["east"]),
        "{}",
        on_global.1
    );
    let zones = global.items("/zones").await;
    assert!(
        zones
            .iter()
            .any(|z| z["name"] == "east" && z["enabled"] == true),
        "GET /zones: {zones:?}"
    );

    // (e) Deleting the policy on global removes the zone's copy.
    global
        .delete("/meshes/default/meshtrafficpermissions/allow-all")
        .await;
    eventually("the policy gone from the zone", PATIENCE, || async {
        let (s, _) = zone
            .get(&format!("/meshes/default/meshtrafficpermissions/{synced}"))
            .await;
        (s == 404).then_some(())
    })
    .await;
    // The zone's own dataplane is untouched by any of it.
    let (s, _) = zone.get("/meshes/default/dataplanes/dp-1").await;
    assert_eq!(s, 200);

    zone.stop().await;
    global.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zones_with_bad_tokens_are_refused_and_nothing_syncs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gdir = dir.path().join("global");
    let (mut global, kds) = start_global_with_mesh(&gdir).await;
    // A valid token, but for zone "west", presented by zone "east".
    let other_zone = zone_token(&global, "west").await;
    // A token for "south" whose signature is broken.
    let mut forged = zone_token(&global, "south").await;
    let last = forged.pop().expect("non-empty token");
    forged.push(if last == 'A' { 'B' } else { 'A' });
    // A token for "old" that expired an hour ago.
    let expired = atoll_cp::tokens::issue_zone_token(
        &**global.store(),
        "old",
        Scope::Cp,
        Duration::from_secs(3600),
        Utc::now() - chrono::Duration::hours(2),
    )
    .await
    .expect("zone token");
    let mut refused = Vec::new();
    for (name, token) in [("east", &other_zone), ("south", &forged), ("old", &expired)] {
        refused.push(start_zone(dir.path(), name, kds, &gdir, token).await);
    }
    // A well-behaved zone started last shows what "enough time to sync" means.
    let good = zone_token(&global, "north").await;
    let mut north = start_zone(dir.path(), "north", kds, &gdir, &good).await;
    eventually(
        "the Mesh on the zone with a good token",
        PATIENCE,
        || async { (north.get("/meshes/default").await.0 == 200).then_some(()) },
    )
    .await;
    for zone in &refused {
        let (s, _) = zone.get("/meshes/default").await;
        assert_eq!(s, 404, "a refused zone got the Mesh");
    }
    let zones = global.items("/zones").await;
    let names: Vec<&str> = zones.iter().filter_map(|z| z["name"].as_str()).collect();
    assert_eq!(names, ["north"], "only the good zone is registered");

    north.stop().await;
    for mut zone in refused {
        zone.stop().await;
    }
    global.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_and_global_converge_after_a_global_restart() {
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
    eventually("the Mesh on the zone", PATIENCE, || async {
        (zone.get("/meshes/default").await.0 == 200).then_some(())
    })
    .await;
    zone.put(
        "/meshes/default/dataplanes/dp-1",
        backend_dataplane("dp-1", "10.0.0.1"),
    )
    .await;
    eventually("dp-1 on global", PATIENCE, || async {
        (zone_dataplanes(&global, "east").await.len() == 1).then_some(())
    })
    .await;

    // Global goes away; the zone keeps serving from its store and takes writes.
    global.stop().await;
    zone.put(
        "/meshes/default/dataplanes/dp-1",
        backend_dataplane("dp-1", "10.0.0.9"),
    )
    .await;
    zone.put(
        "/meshes/default/dataplanes/dp-2",
        backend_dataplane("dp-2", "10.0.0.2"),
    )
    .await;
    let synced = hashed_name("default", "allow-all", &[]);
    let (s, _) = zone
        .get(&format!("/meshes/default/meshtrafficpermissions/{synced}"))
        .await;
    assert_eq!(
        s, 200,
        "the zone lost a synced policy while global was down"
    );

    // Global comes back on the same data directory and port.
    let (global, _) = start_global_with(
        &gdir,
        ConfigArgs {
            kds_address: Some(kds),
            ..Default::default()
        },
    )
    .await;
    let dps = eventually("dp-1 updated and dp-2 on global", PATIENCE, || async {
        let dps = zone_dataplanes(&global, "east").await;
        let dp1 = dps.iter().find(|(n, _)| n == "dp-1")?;
        (dp1.1["networking"]["address"] == "10.0.0.9" && dps.iter().any(|(n, _)| n == "dp-2"))
            .then_some(dps)
    })
    .await;
    assert_eq!(dps.len(), 2, "duplicates on global: {dps:?}");
    // Nothing duplicated on the zone either.
    assert_eq!(zone.items("/meshes").await.len(), 1);
    let policies = zone.items("/meshes/default/meshtrafficpermissions").await;
    assert_eq!(policies.len(), 1, "{policies:?}");
    assert_eq!(zone.items("/meshes/default/dataplanes").await.len(), 2);

    let mut global = global;
    zone.stop().await;
    global.stop().await;
}

/// A policy written on a zone control plane applies there and shows on global (labelled with its
/// zone, read-only there), reaches no other zone, and its delete follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_policy_shows_on_global_and_stays_in_its_zone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gdir = dir.path().join("global");
    let (mut global, kds) = start_global_with_mesh(&gdir).await;
    let east_token = zone_token(&global, "east").await;
    let west_token = zone_token(&global, "west").await;
    let mut east = start_zone(dir.path(), "east", kds, &gdir, &east_token).await;
    let mut west = start_zone(dir.path(), "west", kds, &gdir, &west_token).await;
    for zone in [&east, &west] {
        eventually("the Mesh on the zone", PATIENCE, || async {
            (zone.get("/meshes/default").await.0 == 200).then_some(())
        })
        .await;
    }

    east.put(
        "/meshes/default/meshtrafficpermissions/east-only",
        allow_all_permission("east-only"),
    )
    .await;
    let on_global = hashed_name("default", "east-only", &["east"]);
    let copy = eventually("east's policy on global", PATIENCE, || async {
        let (s, b) = global
            .get(&format!(
                "/meshes/default/meshtrafficpermissions/{on_global}"
            ))
            .await;
        (s == 200).then_some(b)
    })
    .await;
    assert_eq!(copy["labels"]["kuma.io/origin"], "zone", "{copy}");
    assert_eq!(copy["labels"]["kuma.io/zone"], "east", "{copy}");
    assert_eq!(
        copy["labels"]["kuma.io/display-name"], "east-only",
        "{copy}"
    );

    // Global shows it but does not own it: a change there is refused.
    let (status, body) = global
        .try_put(
            &format!("/meshes/default/meshtrafficpermissions/{on_global}"),
            &copy,
        )
        .await;
    assert!(
        (400..500).contains(&status),
        "global changed a zone's policy: {status} {body}"
    );

    // West never receives it: after a policy written on global has arrived there (so the stream
    // is past its first full state), west still holds no copy of east's.
    global
        .put(
            "/meshes/default/meshtrafficpermissions/from-global",
            allow_all_permission("from-global"),
        )
        .await;
    let from_global = hashed_name("default", "from-global", &[]);
    eventually("global's policy in west", PATIENCE, || async {
        let path = format!("/meshes/default/meshtrafficpermissions/{from_global}");
        (west.get(&path).await.0 == 200).then_some(())
    })
    .await;
    let west_policies = west.items("/meshes/default/meshtrafficpermissions").await;
    assert!(
        west_policies
            .iter()
            .all(|p| p["labels"]["kuma.io/display-name"] != "east-only"),
        "{west_policies:?}"
    );

    // Deleting it in east removes global's copy.
    east.delete("/meshes/default/meshtrafficpermissions/east-only")
        .await;
    eventually("east's policy gone from global", PATIENCE, || async {
        let path = format!("/meshes/default/meshtrafficpermissions/{on_global}");
        (global.get(&path).await.0 == 404).then_some(())
    })
    .await;

    west.stop().await;
    east.stop().await;
    global.stop().await;
}
