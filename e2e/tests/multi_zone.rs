//! One global control plane and two zones on loopback, with real Envoy everywhere: a client in
//! zone-1 reaches a backend that runs only in zone-2 through zone-2's ingress over end-to-end
//! mesh mTLS; policies written on global reach the proxies of both zones; the zones keep serving
//! while global is down and converge again when it returns; with `routing.zoneEgress` the
//! cross-zone traffic leaves zone-1 through its egress.

use std::path::{Path, PathBuf};
use std::time::Duration;

use atoll_e2e::{
    DpProcess, DpSpec, DpTarget, answers, envoy_available, http_backend, http_dataplane, logs,
    mesh_wide_permission, start_dp, through_mesh, until, workspace_binary,
};
use atoll_test_support::{CpProcess, free_port};
use serde_json::{Value, json};

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

async fn put(api: &str, path: &str, doc: Value) {
    let resp = http()
        .put(format!("{api}{path}"))
        .json(&doc)
        .send()
        .await
        .expect("PUT");
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    assert!(status.is_success(), "PUT {path}: {status} {body}");
}

async fn get(api: &str, path: &str) -> Option<Value> {
    let resp = http().get(format!("{api}{path}")).send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}

async fn post_text(api: &str, path: &str, body: Value) -> String {
    let resp = http()
        .post(format!("{api}{path}"))
        .json(&body)
        .send()
        .await
        .expect("POST");
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    assert!(status.is_success(), "POST {path}: {status} {text}");
    text
}

/// How many resources of `plural` in mesh `default` a control plane holds.
async fn count(api: &str, plural: &str) -> usize {
    get(api, &format!("/meshes/default/{plural}"))
        .await
        .and_then(|v| v["items"].as_array().map(Vec::len))
        .unwrap_or(0)
}

struct Global {
    kds_port: u16,
    data: PathBuf,
}

fn start_global(data: &Path, kds_port: u16) -> CpProcess {
    let kds = format!("127.0.0.1:{kds_port}");
    CpProcess::spawn(
        workspace_binary("atoll-global-cp")
            .to_str()
            .expect("utf8 path"),
        data,
        &[("ATOLL_KDS_ADDRESS", kds.as_str())],
    )
}

struct Zone {
    name: String,
    cp: CpProcess,
    xds_port: u16,
    xds_ca: PathBuf,
}

async fn start_zone(dir: &Path, global: &Global, name: &str, token: &str) -> Zone {
    let token_file = dir.join(format!("{name}.zone-token"));
    std::fs::write(&token_file, token).expect("token file");
    let xds_port = free_port();
    let mut cp = spawn_zone_cp(dir, global, name, xds_port);
    cp.wait_ready().await;
    Zone {
        name: name.to_string(),
        cp,
        xds_port,
        xds_ca: dir.join(name).join("xds-tls").join("ca.pem"),
    }
}

/// The zone control plane `name` with its data in `dir/name` and its token in
/// `dir/name.zone-token`, serving xDS on `xds_port` (the same on a restart).
fn spawn_zone_cp(dir: &Path, global: &Global, name: &str, xds_port: u16) -> CpProcess {
    let data = dir.join(name);
    std::fs::create_dir_all(&data).expect("zone dir");
    let token_file = dir.join(format!("{name}.zone-token"));
    let xds = format!("127.0.0.1:{xds_port}");
    let global_address = format!("grpcs://127.0.0.1:{}", global.kds_port);
    let global_ca = global.data.join("kds-tls").join("ca.pem");
    CpProcess::spawn(
        workspace_binary("atoll-zone-cp")
            .to_str()
            .expect("utf8 path"),
        &data,
        &[
            ("ATOLL_ZONE", name),
            ("ATOLL_XDS_ADDRESS", xds.as_str()),
            ("ATOLL_GLOBAL_ADDRESS", global_address.as_str()),
            ("ATOLL_GLOBAL_CA_FILE", global_ca.to_str().expect("utf8")),
            ("ATOLL_ZONE_TOKEN_FILE", token_file.to_str().expect("utf8")),
            ("ATOLL_DATAPLANE_OFFLINE_GRACE", "1h"),
        ],
    )
}

/// Whether `name` is connected to the zone and has ACKed the last config sent to it.
async fn in_sync(api: &str, name: &str) -> bool {
    let Some(overview) = get(api, "/meshes/default/dataplanes/_overview").await else {
        return false;
    };
    overview["items"].as_array().is_some_and(|items| {
        items.iter().any(|i| {
            let status = &i["status"];
            i["name"] == name
                && status["online"] == true
                && !status["lastSentVersion"].is_null()
                && status["lastAckedVersion"] == status["lastSentVersion"]
        })
    })
}

impl Zone {
    /// Starts atoll-dp (and Envoy) for `document` with `token`.
    fn proxy(
        &self,
        dir: &Path,
        name: &str,
        proxy_type: &str,
        document: &str,
        token: &str,
        admin_port: u16,
    ) -> DpProcess {
        let target = DpTarget {
            xds_port: self.xds_port,
            ca_file: &self.xds_ca,
        };
        let spec = DpSpec {
            name,
            proxy_type,
            document,
            token,
            admin_port,
        };
        start_dp(
            dir,
            &target,
            &spec,
            &dir.join(format!("{}-{name}.log", self.name)),
        )
    }
}

fn mesh(zone_egress: bool) -> Value {
    json!({"type": "Mesh", "name": "default",
        "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]},
        "routing": {"zoneEgress": zone_egress}})
}

/// The sum of `upstream_cx_total` over an Envoy's clusters, but the one to its control plane.
async fn upstream_connections(admin_port: u16) -> u64 {
    let Ok(resp) = http()
        .get(format!(
            "http://127.0.0.1:{admin_port}/stats?filter=upstream_cx_total"
        ))
        .send()
        .await
    else {
        return 0;
    };
    let text = resp.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| !l.contains("ads_cluster"))
        .filter_map(|l| {
            l.rsplit_once(": ")
                .and_then(|(_, n)| n.trim().parse::<u64>().ok())
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_zone_traffic_through_ingress_and_egress_with_global_policies_and_autonomy() {
    if !envoy_available(
        "cross_zone_traffic_through_ingress_and_egress_with_global_policies_and_autonomy",
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let global_data = dir.path().join("global");
    let kds_port = free_port();
    let global = Global {
        kds_port,
        data: global_data.clone(),
    };
    let mut global_cp = start_global(&global_data, kds_port);
    global_cp.wait_ready().await;
    let g = global_cp.api.clone();

    let zone_token = |zone: &'static str, scope: &'static str| {
        let g = g.clone();
        async move {
            post_text(
                &g,
                "/tokens/zone",
                json!({"zone": zone, "scope": scope, "validFor": "1h"}),
            )
            .await
        }
    };
    let mut zone1 = start_zone(
        dir.path(),
        &global,
        "zone-1",
        &zone_token("zone-1", "cp").await,
    )
    .await;
    let zone2 = start_zone(
        dir.path(),
        &global,
        "zone-2",
        &zone_token("zone-2", "cp").await,
    )
    .await;

    // Mesh and an allow-all permission, written on global, reach both zones.
    put(&g, "/meshes/default", mesh(false)).await;
    put(
        &g,
        "/meshes/default/meshtrafficpermissions/allow-all",
        mesh_wide_permission("Allow"),
    )
    .await;
    for zone in [&zone1, &zone2] {
        let synced = until(Duration::from_secs(30), || async {
            get(&zone.cp.api, "/meshes/default").await.is_some()
                && count(&zone.cp.api, "meshtrafficpermissions").await == 1
        })
        .await;
        assert!(
            synced.is_some(),
            "{} did not get the mesh and permission from global",
            zone.name
        );
    }

    // A zone CP presenting another zone's token is refused: it is never registered on global
    // and receives nothing.
    let impostor = start_zone(
        dir.path(),
        &global,
        "zone-3",
        &zone_token("zone-1", "cp").await,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        get(&g, "/zones/zone-3").await.is_none(),
        "zone-3 must not be registered"
    );
    assert!(
        get(&impostor.cp.api, "/meshes/default").await.is_none(),
        "zone-3 must not be synced"
    );
    drop(impostor);

    // Dataplane tokens minted on global; ingress/egress zone tokens.
    let dp_token = |name: &'static str| {
        let g = g.clone();
        async move {
            post_text(
                &g,
                "/tokens/dataplane",
                json!({"mesh": "default", "name": name, "validFor": "1h"}),
            )
            .await
        }
    };
    let ingress_port = free_port();
    let ingress_admin = free_port();
    let _ingress = zone2.proxy(
        dir.path(),
        "ingress-2",
        "ingress",
        &format!(
            "type: ZoneIngress\nname: ingress-2\nnetworking:\n  address: 127.0.0.1\n  port: {ingress_port}\n  advertisedAddress: 127.0.0.1\n  advertisedPort: {ingress_port}\n"
        ),
        &zone_token("zone-2", "ingress").await,
        ingress_admin,
    );
    let app = http_backend("backend-in-zone-2").await;
    let _backend = zone2.proxy(
        dir.path(),
        "backend-1",
        "sidecar",
        &http_dataplane("backend-1", "backend", free_port(), app.port(), None),
        &dp_token("backend-1").await,
        free_port(),
    );
    let client_outbound = free_port();
    let _client = zone1.proxy(
        dir.path(),
        "client-1",
        "sidecar",
        &http_dataplane(
            "client-1",
            "client",
            free_port(),
            free_port(),
            Some((client_outbound, "backend")),
        ),
        &dp_token("client-1").await,
        free_port(),
    );

    let reached = until(Duration::from_secs(60), || async {
        answers(client_outbound, "backend-in-zone-2").await
    })
    .await;
    assert!(
        reached.is_some(),
        "zone-1's client never reached zone-2's backend; logs:\n{}",
        logs(dir.path())
    );
    assert!(
        upstream_connections(ingress_admin).await > 0,
        "the cross-zone request did not pass through zone-2's ingress"
    );
    eprintln!("cross-zone request succeeded after {reached:?}");

    // An instance of the same service in zone-1 is preferred to zone-2's; when it is gone
    // (its Dataplane deleted), zone-2 takes over again.
    let local_app = http_backend("backend-in-zone-1").await;
    let local_backend = zone1.proxy(
        dir.path(),
        "backend-local",
        "sidecar",
        &http_dataplane(
            "backend-local",
            "backend",
            free_port(),
            local_app.port(),
            None,
        ),
        &dp_token("backend-local").await,
        free_port(),
    );
    let preferred = until(Duration::from_secs(30), || async {
        let mut local = 0;
        for _ in 0..5 {
            if answers(client_outbound, "backend-in-zone-1").await {
                local += 1;
            }
        }
        local == 5
    })
    .await;
    assert!(
        preferred.is_some(),
        "the local instance was not preferred to zone-2's; logs:\n{}",
        logs(dir.path())
    );
    let deleted = http()
        .delete(format!(
            "{}/meshes/default/dataplanes/backend-local",
            zone1.cp.api
        ))
        .send()
        .await
        .expect("DELETE");
    assert!(deleted.status().is_success(), "{}", deleted.status());
    drop(local_backend);
    let failed_over = until(Duration::from_secs(30), || async {
        answers(client_outbound, "backend-in-zone-2").await
    })
    .await;
    assert!(
        failed_over.is_some(),
        "zone-2 did not take over when zone-1's instance was gone; logs:\n{}",
        logs(dir.path())
    );

    // Global lists both zones' dataplanes, each with its zone.
    let listed = get(&g, "/meshes/default/dataplanes")
        .await
        .expect("global lists dataplanes");
    let zones: std::collections::BTreeSet<String> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|d| d["labels"]["kuma.io/zone"].as_str().map(str::to_string))
        .collect();
    assert!(
        zones.contains("zone-1") && zones.contains("zone-2"),
        "{listed}"
    );

    // Deny on global stops the cross-zone traffic within a second; Allow restores it.
    put(
        &g,
        "/meshes/default/meshtrafficpermissions/allow-all",
        mesh_wide_permission("Deny"),
    )
    .await;
    let denied = until(Duration::from_secs(10), || async {
        through_mesh(client_outbound).await.is_err()
    })
    .await;
    let denied =
        denied.unwrap_or_else(|| panic!("Deny never enforced; logs:\n{}", logs(dir.path())));
    assert!(denied <= Duration::from_secs(1), "Deny took {denied:?}");
    put(
        &g,
        "/meshes/default/meshtrafficpermissions/allow-all",
        mesh_wide_permission("Allow"),
    )
    .await;
    let allowed = until(Duration::from_secs(10), || async {
        through_mesh(client_outbound).await.is_ok()
    })
    .await;
    let allowed =
        allowed.unwrap_or_else(|| panic!("Allow never restored; logs:\n{}", logs(dir.path())));
    eprintln!(
        "global policy enforced across zones: Deny after {denied:?}, Allow after {allowed:?}"
    );

    // zoneEgress: zone-1's cross-zone traffic leaves through its egress.
    let egress_port = free_port();
    let egress_admin = free_port();
    let _egress = zone1.proxy(
        dir.path(),
        "egress-1",
        "egress",
        &format!("type: ZoneEgress\nname: egress-1\nnetworking:\n  address: 127.0.0.1\n  port: {egress_port}\n"),
        &zone_token("zone-1", "egress").await,
        egress_admin,
    );
    let egress_registered = until(Duration::from_secs(30), || async {
        get(&zone1.cp.api, "/zoneegresses/egress-1").await.is_some()
    })
    .await;
    assert!(
        egress_registered.is_some(),
        "egress not registered; logs:\n{}",
        logs(dir.path())
    );
    put(&g, "/meshes/default", mesh(true)).await;
    let through_egress = until(Duration::from_secs(30), || async {
        answers(client_outbound, "backend-in-zone-2").await
            && upstream_connections(egress_admin).await > 0
    })
    .await;
    assert!(
        through_egress.is_some(),
        "cross-zone traffic did not pass through zone-1's egress; logs:\n{}",
        logs(dir.path())
    );

    // A MeshExternalService written on global: zone-1's sidecar reaches the "outside" server
    // through the egress, which terminates mesh mTLS and originates the outside connection.
    let outside = http_backend("outside-ok").await;
    put(
        &g,
        "/meshes/default/meshexternalservices/outside",
        json!({"type": "MeshExternalService", "name": "outside", "mesh": "default", "spec": {
            "match": {"type": "HostnameGenerator", "port": 80, "protocol": "http"},
            "endpoints": [{"address": "127.0.0.1", "port": outside.port()}]}}),
    )
    .await;
    let external_outbound = free_port();
    let _external_client = zone1.proxy(
        dir.path(),
        "ext-client-1",
        "sidecar",
        &format!(
            "type: Dataplane\nmesh: default\nname: ext-client-1\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: {}\n    servicePort: {}\n    tags:\n      kuma.io/service: ext-client\n  outbound:\n  - port: {external_outbound}\n    backendRef:\n      kind: MeshExternalService\n      name: outside\n",
            free_port(),
            free_port()
        ),
        &dp_token("ext-client-1").await,
        free_port(),
    );
    let external = until(Duration::from_secs(30), || async {
        answers(external_outbound, "outside-ok").await
    })
    .await;
    assert!(
        external.is_some(),
        "the MeshExternalService was not reached through the egress; logs:\n{}",
        logs(dir.path())
    );
    let stats = http()
        .get(format!(
            "http://127.0.0.1:{egress_admin}/stats?filter=external"
        ))
        .send()
        .await
        .expect("egress stats")
        .text()
        .await
        .unwrap_or_default();
    assert!(
        // Envoy writes the cluster `external:default:outside` as `external_default_outside`.
        stats.lines().any(
            |l| l.starts_with("cluster.external_default_outside.upstream_cx_total:")
                && !l.ends_with(": 0")
        ),
        "the egress did not originate the outside connection:\n{stats}"
    );

    // Global down: the zones keep serving traffic and their APIs answer.
    drop(global_cp);
    let mut ok = 0;
    for _ in 0..20 {
        if answers(client_outbound, "backend-in-zone-2").await {
            ok += 1;
        }
    }
    assert_eq!(ok, 20, "cross-zone requests failed while global was down");
    for zone in [&zone1, &zone2] {
        assert!(
            get(&zone.cp.api, "/").await.is_some(),
            "{} API down without global",
            zone.name
        );
    }

    // zone-1's control plane killed and restarted while global is still away: it derives its
    // routes to zone-2 from its own store (not from change events that will not come), so the
    // client's reconnected Envoy keeps reaching zone-2's backend. Envoy keeps its last config
    // while the control plane is gone, so not a request may fail.
    drop(zone1.cp);
    let mut down_ok = 0;
    for _ in 0..10 {
        if answers(client_outbound, "backend-in-zone-2").await {
            down_ok += 1;
        }
    }
    assert_eq!(down_ok, 10, "requests failed while zone-1's CP was down");
    let restarted_at = std::time::Instant::now();
    zone1.cp = spawn_zone_cp(dir.path(), &global, "zone-1", zone1.xds_port);
    zone1.cp.wait_ready().await;
    let resynced = until(Duration::from_secs(30), || async {
        in_sync(&zone1.cp.api, "client-1").await
    })
    .await;
    assert!(
        resynced.is_some(),
        "client-1 did not reconnect to the restarted zone CP; logs:\n{}",
        logs(dir.path())
    );
    let mut after_ok = 0;
    for _ in 0..20 {
        if answers(client_outbound, "backend-in-zone-2").await {
            after_ok += 1;
        }
    }
    assert_eq!(
        after_ok,
        20,
        "cross-zone requests failed after zone-1's CP restarted; logs:\n{}",
        logs(dir.path())
    );
    eprintln!(
        "zone CP restart: client resynced {:?} after the new process started",
        restarted_at.elapsed()
    );

    // Global back (same data, same KDS address): a new policy reaches the zones.
    let mut global_cp = start_global(&global_data, kds_port);
    global_cp.wait_ready().await;
    let g = global_cp.api.clone();
    put(
        &g,
        "/meshes/default/meshtimeouts/after-restart",
        json!({"type": "MeshTimeout", "name": "after-restart", "mesh": "default", "spec": {
            "targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": {"kind": "Mesh"}, "default": {"connectionTimeout": "3s"}}]}}),
    )
    .await;
    for zone in [&zone1, &zone2] {
        let synced = until(Duration::from_secs(60), || async {
            get(&zone.cp.api, "/meshes/default/meshtimeouts")
                .await
                .is_some_and(|list| {
                    list["items"].as_array().is_some_and(|items| {
                        items
                            .iter()
                            .any(|t| t["labels"]["kuma.io/display-name"] == "after-restart")
                    })
                })
        })
        .await;
        assert!(
            synced.is_some(),
            "{} did not get the policy written after global restarted",
            zone.name
        );
    }
    assert!(
        through_mesh(client_outbound).await.is_ok(),
        "traffic after global's return"
    );
}
