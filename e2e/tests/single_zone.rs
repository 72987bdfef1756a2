//! A standalone zone control plane running a real mesh on loopback: a backend and a client, each
//! with atoll-dp and Envoy, talking over mesh mTLS; MeshTrafficPermission changes enforced by the
//! proxies; tokens for another dataplane refused; generated config and NACKs visible.

use std::path::Path;
use std::time::{Duration, Instant};

use atoll_e2e::{
    DpProcess, DpSpec, DpTarget, answers, envoy_available, http_backend, http_dataplane, logs,
    mesh_wide_permission, start_dp, through_mesh, until, workspace_binary,
};
use atoll_test_support::{CpProcess, free_port};
use serde_json::{Value, json};

struct Zone {
    cp: CpProcess,
    xds_port: u16,
    ca_file: std::path::PathBuf,
    http: reqwest::Client,
}

impl Zone {
    async fn put(&self, path: &str, doc: Value) {
        let resp = self
            .http
            .put(format!("{}{path}", self.cp.api))
            .json(&doc)
            .send()
            .await
            .expect("PUT");
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "PUT {path}: {status} {body}");
    }

    async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.cp.api))
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .unwrap_or(Value::Null)
    }

    async fn token(&self, name: &str) -> String {
        let resp = self
            .http
            .post(format!("{}/tokens/dataplane", self.cp.api))
            .json(&json!({"mesh": "default", "name": name, "validFor": "1h"}))
            .send()
            .await
            .expect("POST token");
        assert!(resp.status().is_success());
        resp.text().await.expect("token")
    }

    fn dp(&self, dir: &Path, name: &str, dataplane: &str, token: &str) -> DpProcess {
        let target = DpTarget {
            xds_port: self.xds_port,
            ca_file: &self.ca_file,
        };
        let spec = DpSpec {
            name,
            proxy_type: "sidecar",
            document: dataplane,
            token,
            admin_port: free_port(),
        };
        start_dp(dir, &target, &spec, &dir.join(format!("{name}.log")))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_traffic_over_mtls_with_permissions_tokens_and_inspection() {
    if !envoy_available("mesh_traffic_over_mtls_with_permissions_tokens_and_inspection") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("cp");
    let xds_port = free_port();
    let xds = format!("127.0.0.1:{xds_port}");
    let bin = workspace_binary("atoll-zone-cp");
    let mut cp = CpProcess::spawn(
        bin.to_str().expect("utf8 path"),
        &data,
        &[
            ("ATOLL_XDS_ADDRESS", xds.as_str()),
            ("ATOLL_DATAPLANE_OFFLINE_GRACE", "1h"),
        ],
    );
    cp.wait_ready().await;
    let zone = Zone {
        cp,
        xds_port,
        ca_file: data.join("xds-tls").join("ca.pem"),
        http: reqwest::Client::new(),
    };
    assert!(zone.ca_file.exists(), "the zone CP wrote its xDS CA");

    zone.put(
        "/meshes/default",
        json!({"type": "Mesh", "name": "default", "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}}),
    )
    .await;
    zone.put(
        "/meshes/default/meshtrafficpermissions/allow-all",
        mesh_wide_permission("Allow"),
    )
    .await;

    let app = http_backend("backend-ok").await;
    let backend_inbound = free_port();
    let client_outbound = free_port();
    let backend_token = zone.token("backend-1").await;
    let client_token = zone.token("client-1").await;
    let _backend = zone.dp(
        dir.path(),
        "backend-1",
        &http_dataplane("backend-1", "backend", backend_inbound, app.port(), None),
        &backend_token,
    );
    let _client = zone.dp(
        dir.path(),
        "client-1",
        &http_dataplane(
            "client-1",
            "client",
            free_port(),
            free_port(),
            Some((client_outbound, "backend")),
        ),
        &client_token,
    );

    // A request to the client's outbound reaches the backend through both sidecars.
    let reached = until(Duration::from_secs(30), || async {
        answers(client_outbound, "backend-ok").await
    })
    .await;
    assert!(
        reached.is_some(),
        "no traffic through the mesh; logs:\n{}",
        logs(dir.path())
    );

    // The backend's inbound refuses plaintext.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client")
        .get(format!("http://127.0.0.1:{backend_inbound}/"))
        .send()
        .await;
    assert!(
        plain.as_ref().map_or(true, |r| !r.status().is_success()),
        "plaintext reached the backend: {plain:?}"
    );

    // Deny stops the traffic; Allow restores it.
    zone.put(
        "/meshes/default/meshtrafficpermissions/allow-all",
        mesh_wide_permission("Deny"),
    )
    .await;
    let denied = until(Duration::from_secs(10), || async {
        through_mesh(client_outbound).await.is_err()
    })
    .await;
    let denied =
        denied.unwrap_or_else(|| panic!("Deny was not enforced; logs:\n{}", logs(dir.path())));
    zone.put(
        "/meshes/default/meshtrafficpermissions/allow-all",
        mesh_wide_permission("Allow"),
    )
    .await;
    let allowed = until(Duration::from_secs(10), || async {
        through_mesh(client_outbound).await.is_ok()
    })
    .await;
    let allowed =
        allowed.unwrap_or_else(|| panic!("Allow was not restored; logs:\n{}", logs(dir.path())));
    eprintln!("MeshTrafficPermission enforced: Deny after {denied:?}, Allow after {allowed:?}");

    // A proxy presenting another dataplane's token is refused and gets no configuration.
    let mut intruder = zone.dp(
        dir.path(),
        "intruder-1",
        &http_dataplane("intruder-1", "intruder", free_port(), free_port(), None),
        &backend_token,
    );
    assert_eq!(
        intruder.wait_exit(Duration::from_secs(20)),
        Some(false),
        "atoll-dp with a foreign token must fail"
    );
    let intruder_log =
        std::fs::read_to_string(dir.path().join("intruder-1.log")).unwrap_or_default();
    assert!(intruder_log.contains("token"), "{intruder_log}");
    let (_, registered) = (
        (),
        zone.http
            .get(format!(
                "{}/meshes/default/dataplanes/intruder-1",
                zone.cp.api
            ))
            .send()
            .await
            .expect("GET")
            .status(),
    );
    assert_eq!(
        registered.as_u16(),
        404,
        "the intruder must not be registered"
    );

    // Inspection: the generated config, the rules, and the overview.
    let config = zone
        .get("/meshes/default/dataplanes/backend-1/_config")
        .await;
    let names: Vec<&str> = config["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(names.iter().any(|n| n.starts_with("inbound:")), "{names:?}");
    assert!(
        !config.to_string().contains("PRIVATE KEY"),
        "private keys must not be shown"
    );
    let rules = zone
        .get("/meshes/default/dataplanes/backend-1/_rules")
        .await;
    assert_eq!(
        rules["inbounds"][0]["trafficPermissions"][0]["action"], "Allow",
        "{rules}"
    );
    let overview = zone.get("/meshes/default/dataplanes/_overview").await;
    let backend = overview["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["name"] == "backend-1")
        .expect("backend-1 listed")
        .clone();
    assert_eq!(backend["status"]["online"], true, "{backend}");
    assert!(
        backend["status"]["certificateExpiry"].is_string(),
        "{backend}"
    );
    assert!(
        backend["status"]["lastAckedVersion"].is_string(),
        "{backend}"
    );

    // Mesh CA rotation: switching to a new builtin CA (and dropping the old one from the list)
    // while requests flow fails none of them; the proxies end on certificates of the new CA and
    // trust its root alone.
    let root_of = |backend: &'static str| {
        let zone = &zone;
        async move {
            let secret = zone
                .get(&format!(
                    "/meshes/default/secrets/default.ca-builtin-cert-{backend}"
                ))
                .await;
            let data = secret["data"].as_str().unwrap_or_default().to_string();
            use base64::Engine;
            let pem = base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap_or_default();
            // The body's last line (signature bytes) names the root inside the JSON config.
            String::from_utf8_lossy(&pem)
                .lines()
                .rfind(|l| !l.starts_with("-----") && l.len() > 8)
                .unwrap_or("no such root")
                .to_string()
        }
    };
    let ca_1 = root_of("ca-1").await;
    // Connections opened under the Deny above may still answer 403 for a moment after Allow
    // first got through: start from traffic that is steady.
    let steady = until(Duration::from_secs(10), || async {
        for _ in 0..20 {
            if !answers(client_outbound, "backend-ok").await {
                return false;
            }
        }
        true
    })
    .await;
    assert!(
        steady.is_some(),
        "traffic never steady; logs:\n{}",
        logs(dir.path())
    );
    let traffic = tokio::spawn(async move {
        let (mut ok, mut failed) = (0u32, Vec::new());
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(8) {
            match through_mesh(client_outbound).await {
                Ok(_) => ok += 1,
                Err(e) => failed.push(format!("at {:?}: {e}", started.elapsed())),
            }
        }
        (ok, failed)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    zone.put(
        "/meshes/default",
        json!({"type": "Mesh", "name": "default", "mtls": {"enabledBackend": "ca-2", "backends": [{"name": "ca-2", "type": "builtin"}]}}),
    )
    .await;
    let (ok, failed) = traffic.await.expect("traffic task");
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the CA switch: {:?}; logs:\n{}",
        failed.len(),
        ok as usize + failed.len(),
        failed.first(),
        logs(dir.path())
    );
    let ca_2 = root_of("ca-2").await;
    assert_ne!(ca_1, ca_2);
    let moved = until(Duration::from_secs(30), || async {
        let config = zone
            .get("/meshes/default/dataplanes/backend-1/_config")
            .await
            .to_string();
        config.contains(&ca_2) && !config.contains(&ca_1)
    })
    .await;
    assert!(
        moved.is_some(),
        "the backend did not end on the new CA alone; logs:\n{}",
        logs(dir.path())
    );
    assert!(answers(client_outbound, "backend-ok").await);
    eprintln!("CA switch: {ok} requests, none failed; new CA alone after {moved:?}");

    // A NACK shows with Envoy's error text: an outbound on a port that is already taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_port = taken.local_addr().expect("addr").port();
    let broken_token = zone.token("broken-1").await;
    let _broken = zone.dp(
        dir.path(),
        "broken-1",
        &http_dataplane(
            "broken-1",
            "broken",
            free_port(),
            free_port(),
            Some((taken_port, "backend")),
        ),
        &broken_token,
    );
    let started = Instant::now();
    let mut nack = Value::Null;
    while started.elapsed() < Duration::from_secs(20) && !nack.is_object() {
        let overview = zone.get("/meshes/default/dataplanes/_overview").await;
        if let Some(entry) = overview["items"]
            .as_array()
            .and_then(|items| items.iter().find(|i| i["name"] == "broken-1"))
        {
            nack = entry["status"]["lastNack"].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let found = nack.is_object().then_some(());
    assert!(
        found.is_some(),
        "no NACK recorded; logs:\n{}",
        logs(dir.path())
    );
    let message = nack["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{nack}");
    eprintln!("NACK recorded: {message}");
    drop(taken);
}
