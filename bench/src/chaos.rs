//! `atoll-bench chaos`: faults survived by a real multi-zone mesh, measured.
//!
//! A global CP, two zone CPs, zone-2's ingress and a backend sidecar, and in zone-1 a client
//! sidecar that reaches the backend only across zones (real Envoys through atoll-dp), while a
//! steady load of fresh requests runs through the client. Scenarios, each reported with the
//! failed requests, the time to recover and a state comparison of global and the zones:
//! - `global-kill`: global killed (SIGKILL) under load, then restarted;
//! - `zone-restart`: each zone CP killed and restarted, the client's side then the backend's;
//! - `partition`: global, then zone-2's CP, frozen (SIGSTOP) for `--partition`, then thawed;
//! - `postgres`: the PostgreSQL server behind global restarted under concurrent writes, then
//!   every acknowledged write looked for on global and in the zones;
//! - `poison`: a Dataplane whose address is not an IP, registered through a zone's bootstrap
//!   and API (refused), and traffic unaffected.
//!
//! Needs release binaries (`cargo build --release -p atoll-bench -p atoll-global-cp
//! -p atoll-zone-cp -p atoll-dp`), Envoy on PATH, and for `postgres` the machine's PostgreSQL
//! (ATOLL_TEST_POSTGRES_URL, as the store suite). Results: RELIABILITY.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::controlplanes::{ControlPlane, GlobalLink, MESH, Stores, mesh_doc, permission_doc};
use crate::procs::{ChildGuard, free_port, log_tail, workspace_binary};

#[derive(Debug, clap::Args)]
pub struct ChaosArgs {
    /// Scenarios to run, comma-separated: global-kill, zone-restart, partition, postgres,
    /// poison (default: all).
    #[arg(
        long,
        default_value = "global-kill,zone-restart,partition,postgres,poison"
    )]
    scenarios: String,
    /// How long a frozen control plane stays frozen.
    #[arg(long, default_value = "60s", value_parser = atoll_core::types::parse_flag_duration)]
    partition: Duration,
    /// Requests per second through the client while faults happen.
    #[arg(long, default_value_t = 50)]
    rate: u32,
    /// Global's store: sqlite or postgres (`postgres` is needed by the `postgres` scenario).
    #[arg(long, default_value = "postgres")]
    store: String,
}

/// Outcome of one request of the load.
struct Sample {
    at: Instant,
    ok: bool,
    error: String,
}

/// Requests through the client sidecar, each on a fresh connection, at a steady rate.
struct Load {
    samples: Arc<Mutex<Vec<Sample>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(port: u16, rate: u32) -> Load {
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let out = samples.clone();
        let task = tokio::spawn(async move {
            let period = Duration::from_secs(1) / rate.max(1);
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let out = out.clone();
                tokio::spawn(async move {
                    let at = Instant::now();
                    let result = request(port).await;
                    if let Ok(mut s) = out.lock() {
                        s.push(Sample {
                            at,
                            ok: result.is_ok(),
                            error: result.err().unwrap_or_default(),
                        });
                    }
                });
            }
        });
        Load { samples, task }
    }

    /// Requests sent from `since` on: (total, failed, the first few errors).
    fn since(&self, since: Instant) -> (usize, usize, Vec<String>) {
        let Ok(samples) = self.samples.lock() else {
            return (0, 0, Vec::new());
        };
        let window: Vec<&Sample> = samples.iter().filter(|s| s.at >= since).collect();
        let failed: Vec<&&Sample> = window.iter().filter(|s| !s.ok).collect();
        let mut errors: Vec<String> = failed.iter().map(|s| s.error.clone()).collect();
        errors.dedup();
        errors.truncate(3);
        (window.len(), failed.len(), errors)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn request(port: u16) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| e.to_string())?;
    let response = client
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {status}"))
    }
}

/// The mesh under test: processes kept so scenarios can kill, restart and freeze them.
struct Mesh {
    dir: PathBuf,
    store: String,
    global: Option<ControlPlane>,
    zones: BTreeMap<String, Option<ControlPlane>>,
    xds_ports: BTreeMap<String, u16>,
    tokens: BTreeMap<String, String>,
    _proxies: Vec<ChildGuard>,
    outbound: u16,
    kds_port: u16,
}

impl Mesh {
    async fn start(dir: &Path, store: &str) -> Result<Mesh> {
        let kds_port = free_port()?;
        let global = ControlPlane::start_global_on(dir, store, kds_port).await?;
        global.put(&format!("/meshes/{MESH}"), &mesh_doc()).await?;
        global
            .put(
                &format!("/meshes/{MESH}/meshtrafficpermissions/bench-all"),
                &permission_doc(true),
            )
            .await?;
        let mut mesh = Mesh {
            dir: dir.to_path_buf(),
            store: store.to_string(),
            global: Some(global),
            zones: BTreeMap::new(),
            xds_ports: BTreeMap::new(),
            tokens: BTreeMap::new(),
            _proxies: Vec::new(),
            outbound: free_port()?,
            kds_port,
        };
        for zone in ["zone-1", "zone-2"] {
            let token = mesh.global()?.zone_token(zone).await?;
            mesh.tokens.insert(zone.to_string(), token);
            mesh.xds_ports.insert(zone.to_string(), free_port()?);
            mesh.start_zone(zone).await?;
        }
        for zone in ["zone-1", "zone-2"] {
            mesh.zone_mut(zone)?
                .wait_until(
                    &format!("/meshes/{MESH}/meshtrafficpermissions"),
                    "the mesh and its permission from global",
                    Duration::from_secs(60),
                    |b| b["total"].as_u64() == Some(1),
                )
                .await?;
        }
        let (app, _task) = crate::dataplane::backend().await?;
        std::mem::forget(_task);
        let ingress_port = free_port()?;
        mesh.proxy(
            "zone-2",
            "ingress-2",
            "ingress",
            &format!(
                "type: ZoneIngress\nname: ingress-2\nnetworking:\n  address: 127.0.0.1\n  port: {ingress_port}\n  advertisedAddress: 127.0.0.1\n  advertisedPort: {ingress_port}\n"
            ),
        )?;
        mesh.proxy(
            "zone-2",
            "backend-1",
            "sidecar",
            &atoll_test_support::http_dataplane(
                "backend-1",
                "backend",
                free_port()?,
                app.port(),
                None,
            ),
        )?;
        let outbound = mesh.outbound;
        mesh.proxy(
            "zone-1",
            "client-1",
            "sidecar",
            &atoll_test_support::http_dataplane(
                "client-1",
                "client",
                free_port()?,
                free_port()?,
                Some((outbound, "backend")),
            ),
        )?;
        let started = Instant::now();
        while request(outbound).await.is_err() {
            if started.elapsed() > Duration::from_secs(90) {
                bail!(
                    "no cross-zone traffic within 90 s; client log:\n{}",
                    log_tail(&dir.join("client-1.log"), 3000)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!(
            "mesh up: cross-zone traffic after {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(mesh)
    }

    fn global(&self) -> Result<&ControlPlane> {
        self.global.as_ref().context("global is down")
    }

    fn zone(&self, zone: &str) -> Result<&ControlPlane> {
        self.zones
            .get(zone)
            .and_then(Option::as_ref)
            .with_context(|| format!("{zone} is down"))
    }

    fn zone_mut(&mut self, zone: &str) -> Result<&mut ControlPlane> {
        self.zones
            .get_mut(zone)
            .and_then(Option::as_mut)
            .with_context(|| format!("{zone} is down"))
    }

    async fn start_zone(&mut self, zone: &str) -> Result<()> {
        let token = self.tokens.get(zone).context("zone token")?.clone();
        let xds_port = *self.xds_ports.get(zone).context("xDS port")?;
        let link = GlobalLink {
            zone: zone.to_string(),
            kds_port: self.kds_port,
            ca_file: self.dir.join("global").join("kds-tls").join("ca.pem"),
            token: &token,
        };
        let cp =
            ControlPlane::start_zone_on(&self.dir, zone, "sqlite://", Some(link), xds_port).await?;
        self.zones.insert(zone.to_string(), Some(cp));
        Ok(())
    }

    async fn restart_global(&mut self) -> Result<()> {
        self.global = None;
        self.global =
            Some(ControlPlane::start_global_on(&self.dir, &self.store, self.kds_port).await?);
        Ok(())
    }

    /// atoll-dp for `document` in `zone` (tokens are off in these zones: benchmarks only).
    fn proxy(&mut self, zone: &str, name: &str, proxy_type: &str, document: &str) -> Result<()> {
        let file = self.dir.join(format!("{name}.yaml"));
        std::fs::write(&file, document)?;
        let token = self.dir.join(format!("{name}.token"));
        std::fs::write(&token, "none")?;
        let ca = self.dir.join(zone).join("xds-tls").join("ca.pem");
        let xds_port = *self.xds_ports.get(zone).context("xDS port")?;
        let mut cmd = Command::new(workspace_binary("atoll-dp")?);
        cmd.arg("run")
            .args(["--cp-address", &format!("https://127.0.0.1:{xds_port}")])
            .args(["--proxy-type", proxy_type])
            .arg("--dataplane-file")
            .arg(&file)
            .arg("--dataplane-token-file")
            .arg(&token)
            .arg("--ca-cert-file")
            .arg(&ca)
            .args(["--admin-port", &free_port()?.to_string()])
            .args([
                "--cp-connect-timeout",
                "30s",
                "--envoy-log-level",
                "warning",
            ]);
        let log = self.dir.join(format!("{name}.log"));
        self._proxies
            .push(ChildGuard::spawn(cmd, name, &log, Duration::from_secs(12))?);
        Ok(())
    }

    /// Whether the client sidecar is connected to zone-1's CP and has ACKed its config.
    async fn client_in_sync(&self) -> bool {
        let Ok(zone) = self.zone("zone-1") else {
            return false;
        };
        let Ok((200, overview)) = zone
            .get(&format!("/meshes/{MESH}/dataplanes/_overview"))
            .await
        else {
            return false;
        };
        overview["items"].as_array().is_some_and(|items| {
            items.iter().any(|i| {
                let s = &i["status"];
                i["name"] == "client-1"
                    && s["online"] == true
                    && !s["lastSentVersion"].is_null()
                    && s["lastAckedVersion"] == s["lastSentVersion"]
            })
        })
    }

    /// What global and each zone hold of each other: global's Meshes and policies in every
    /// zone, every zone's Dataplanes on global. Counts missing, differing and duplicated.
    async fn compare_state(&self) -> Result<StateDiff> {
        let mut diff = StateDiff::default();
        let global = self.global()?;
        for plural in ["meshtrafficpermissions", "meshtimeouts"] {
            let on_global = items_by_name(global, &format!("/meshes/{MESH}/{plural}")).await?;
            for zone in ["zone-1", "zone-2"] {
                let on_zone =
                    items_by_name(self.zone(zone)?, &format!("/meshes/{MESH}/{plural}")).await?;
                diff.add(&on_global, &on_zone, &format!("{plural} global->{zone}"));
            }
        }
        let on_global = items_by_name(global, &format!("/meshes/{MESH}/dataplanes")).await?;
        for zone in ["zone-1", "zone-2"] {
            let on_zone = items_by_name(self.zone(zone)?, &format!("/meshes/{MESH}/dataplanes"))
                .await?
                .into_iter()
                .collect();
            let from_zone: BTreeMap<String, Vec<Value>> = on_global
                .iter()
                .filter(|(_, v)| v.iter().any(|d| d["labels"]["kuma.io/zone"] == zone))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            diff.add(&on_zone, &from_zone, &format!("dataplanes {zone}->global"));
        }
        Ok(diff)
    }
}

/// Resources of one list by display name (several under one name = duplicated).
async fn items_by_name(cp: &ControlPlane, path: &str) -> Result<BTreeMap<String, Vec<Value>>> {
    let (status, body) = cp.get(&format!("{path}?size=1000")).await?;
    if status != 200 {
        bail!("GET {path} on {}: {status}", cp.name);
    }
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for item in body["items"].as_array().into_iter().flatten() {
        let name = item["labels"]["kuma.io/display-name"]
            .as_str()
            .or_else(|| item["name"].as_str())
            .unwrap_or_default()
            .to_string();
        out.entry(name).or_default().push(item.clone());
    }
    Ok(out)
}

#[derive(Debug, Default)]
struct StateDiff {
    missing: Vec<String>,
    differing: Vec<String>,
    duplicated: Vec<String>,
}

impl StateDiff {
    /// Compares what `source` holds with its copy in `copy`: specs must match.
    fn add(
        &mut self,
        source: &BTreeMap<String, Vec<Value>>,
        copy: &BTreeMap<String, Vec<Value>>,
        what: &str,
    ) {
        for (name, items) in source {
            let Some(copies) = copy.get(name) else {
                self.missing.push(format!("{what}: {name}"));
                continue;
            };
            if copies.len() > 1 || items.len() > 1 {
                self.duplicated.push(format!("{what}: {name}"));
            }
            if items.first().map(spec_of) != copies.first().map(spec_of) {
                self.differing.push(format!("{what}: {name}"));
            }
        }
    }

    fn summary(&self) -> String {
        format!(
            "missing={} differing={} duplicated={}{}",
            self.missing.len(),
            self.differing.len(),
            self.duplicated.len(),
            self.missing
                .iter()
                .chain(&self.differing)
                .chain(&self.duplicated)
                .next()
                .map(|x| format!(" (first: {x})"))
                .unwrap_or_default()
        )
    }
}

/// A resource's own fields: what sync must carry unchanged (not names, labels or metadata).
fn spec_of(item: &Value) -> Value {
    let mut v = item.clone();
    if let Value::Object(m) = &mut v {
        for key in [
            "name",
            "labels",
            "creationTime",
            "modificationTime",
            "version",
            "mesh",
        ] {
            m.remove(key);
        }
    }
    v
}

/// Waits (at most `limit`) until the client is in sync with zone-1 and a request passes.
async fn recovered(mesh: &Mesh, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if mesh.client_in_sync().await && request(mesh.outbound).await.is_ok() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Waits (at most `limit`) until global and the zones agree; the last comparison.
async fn settled(mesh: &Mesh, limit: Duration) -> Result<StateDiff> {
    let started = Instant::now();
    loop {
        let diff = mesh.compare_state().await?;
        let clean =
            diff.missing.is_empty() && diff.differing.is_empty() && diff.duplicated.is_empty();
        if clean || started.elapsed() > limit {
            return Ok(diff);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn report(name: &str, load: &Load, since: Instant, recovery: Option<Duration>, diff: &StateDiff) {
    let (total, failed, errors) = load.since(since);
    println!(
        "chaos {name}: requests={total} failed={failed} recovery={} state: {}{}",
        recovery.map_or("none".to_string(), |d| format!("{:.2}s", d.as_secs_f64())),
        diff.summary(),
        if errors.is_empty() {
            String::new()
        } else {
            format!(" errors: {errors:?}")
        }
    );
}

pub async fn run(args: ChaosArgs) -> Result<()> {
    let scenarios: Vec<&str> = args.scenarios.split(',').map(str::trim).collect();
    let dir = tempfile::tempdir().context("tempdir")?;
    let stores = Stores::new(&args.store, 1).await?;
    let mut mesh = Mesh::start(dir.path(), stores.url(0)).await?;
    let load = Load::start(mesh.outbound, args.rate);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let result = run_scenarios(&mut mesh, &load, &scenarios, &args).await;
    drop(load);
    drop(mesh);
    stores.finish().await;
    result
}

async fn run_scenarios(
    mesh: &mut Mesh,
    load: &Load,
    scenarios: &[&str],
    args: &ChaosArgs,
) -> Result<()> {
    let policy = |i: usize| {
        json!({"type": "MeshTimeout", "name": format!("chaos-{i}"), "mesh": MESH, "spec": {
            "targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": {"kind": "Mesh"}, "default": {"connectionTimeout": format!("{}s", 5 + i % 10)}}]}})
    };
    let mut written = 0usize;
    if scenarios.contains(&"global-kill") {
        let since = Instant::now();
        mesh.global()?.signal("KILL")?;
        mesh.global = None;
        tokio::time::sleep(Duration::from_secs(10)).await;
        mesh.restart_global().await?;
        mesh.global()?
            .put(
                &format!("/meshes/{MESH}/meshtimeouts/chaos-{written}"),
                &policy(written),
            )
            .await?;
        written += 1;
        let diff = settled(mesh, Duration::from_secs(60)).await?;
        report(
            "global-kill",
            load,
            since,
            recovered(mesh, Duration::from_secs(30)).await,
            &diff,
        );
    }
    if scenarios.contains(&"zone-restart") {
        for zone in ["zone-1", "zone-2"] {
            let since = Instant::now();
            mesh.zone(zone)?.signal("KILL")?;
            mesh.zones.insert(zone.to_string(), None);
            let restarted = Instant::now();
            mesh.start_zone(zone).await?;
            let recovery = if zone == "zone-1" {
                recovered(mesh, Duration::from_secs(30))
                    .await
                    .map(|_| restarted.elapsed())
            } else {
                recovered(mesh, Duration::from_secs(30)).await
            };
            let after = Instant::now();
            tokio::time::sleep(Duration::from_secs(5)).await;
            let diff = settled(mesh, Duration::from_secs(60)).await?;
            report(
                &format!("zone-restart {zone}"),
                load,
                since,
                recovery,
                &diff,
            );
            report(
                &format!("zone-restart {zone} after recovery"),
                load,
                after,
                None,
                &diff,
            );
        }
    }
    if scenarios.contains(&"partition") {
        for who in ["global", "zone-2"] {
            let since = Instant::now();
            let cp = if who == "global" {
                mesh.global()?
            } else {
                mesh.zone(who)?
            };
            cp.signal("STOP")?;
            tokio::time::sleep(args.partition).await;
            let cp = if who == "global" {
                mesh.global()?
            } else {
                mesh.zone(who)?
            };
            cp.signal("CONT")?;
            let thawed = Instant::now();
            if who == "global" {
                mesh.global()?
                    .put(
                        &format!("/meshes/{MESH}/meshtimeouts/chaos-{written}"),
                        &policy(written),
                    )
                    .await?;
                written += 1;
            }
            let diff = settled(mesh, Duration::from_secs(90)).await?;
            let recovery = Some(thawed.elapsed());
            report(
                &format!("partition {who} {:?}", args.partition),
                load,
                since,
                recovery,
                &diff,
            );
        }
    }
    if scenarios.contains(&"postgres") {
        if mesh.store.starts_with("postgres") {
            postgres_restart(mesh, load, &mut written).await?;
        } else {
            println!("chaos postgres: skipped (global is not on PostgreSQL: --store postgres)");
        }
    }
    if scenarios.contains(&"poison") {
        poison(mesh, load).await?;
    }
    Ok(())
}

/// PostgreSQL restarted while writers keep writing on global: every write global acknowledged
/// must be there afterwards, on global and in both zones.
async fn postgres_restart(mesh: &mut Mesh, load: &Load, written: &mut usize) -> Result<()> {
    let since = Instant::now();
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let (mut refused, mut writers) = (0usize, Vec::new());
    let api = mesh.global()?.api.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for w in 0..4 {
        let (api, acknowledged, stop) = (api.clone(), acknowledged.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default();
            let mut refused = 0usize;
            let mut i = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let name = format!("pg-{w}-{i}");
                let doc = json!({"type": "MeshTimeout", "name": name, "mesh": MESH, "spec": {
                    "targetRef": {"kind": "Mesh"},
                    "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "30s"}}]}});
                let ok = client
                    .put(format!("{api}/meshes/{MESH}/meshtimeouts/{name}"))
                    .json(&doc)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    if let Ok(mut a) = acknowledged.lock() {
                        a.push(name);
                    }
                } else {
                    refused += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                i += 1;
            }
            refused
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let version = std::fs::read_dir("/etc/postgresql")
        .context("/etc/postgresql")?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .max()
        .context("no PostgreSQL cluster")?;
    let restarted = Command::new("pg_ctlcluster")
        .args([&version, "main", "restart"])
        .status()
        .context("pg_ctlcluster restart")?;
    if !restarted.success() {
        bail!("pg_ctlcluster {version} main restart failed");
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        refused += w.await.unwrap_or(0);
    }
    let acknowledged = acknowledged.lock().map(|a| a.clone()).unwrap_or_default();
    *written += acknowledged.len();
    let mut lost = Vec::new();
    for name in &acknowledged {
        let (status, _) = mesh
            .global()?
            .get(&format!("/meshes/{MESH}/meshtimeouts/{name}"))
            .await?;
        if status != 200 {
            lost.push(name.clone());
        }
    }
    let diff = settled(mesh, Duration::from_secs(90)).await?;
    println!(
        "chaos postgres restart: acknowledged={} refused-during-outage={} lost={}{}",
        acknowledged.len(),
        refused,
        lost.len(),
        lost.first()
            .map(|l| format!(" (first: {l})"))
            .unwrap_or_default()
    );
    report("postgres restart", load, since, None, &diff);
    Ok(())
}

/// A Dataplane whose address is not an IP claims the backend's service: refused at the zone's
/// bootstrap and API with the field named; the client's traffic does not notice.
async fn poison(mesh: &mut Mesh, load: &Load) -> Result<()> {
    let since = Instant::now();
    let doc = json!({"type": "Dataplane", "mesh": MESH, "name": "poison-1", "networking": {
        "address": "backend.invalid", "inbound": [{"port": 18080, "servicePort": 8080,
        "tags": {"kuma.io/service": "backend", "kuma.io/protocol": "http"}}]}});
    let zone = mesh.zone("zone-2")?;
    let api_refused = zone
        .put(&format!("/meshes/{MESH}/dataplanes/poison-1"), &doc)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    let registered = zone
        .get(&format!("/meshes/{MESH}/dataplanes/poison-1"))
        .await?
        .0
        == 200;
    mesh.proxy(
        "zone-2",
        "poison-1",
        "sidecar",
        &serde_json::to_string(&doc).unwrap_or_default(),
    )?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let dp_log = log_tail(&mesh.dir.join("poison-1.log"), 600);
    let diff = settled(mesh, Duration::from_secs(30)).await?;
    println!(
        "chaos poison: API refused={} registered={registered} atoll-dp refused={}",
        api_refused.contains("networking.address"),
        dp_log.contains("networking.address")
    );
    report("poison", load, since, None, &diff);
    Ok(())
}
