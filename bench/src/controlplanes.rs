//! Real control-plane processes for the `convergence` and `capacity` benchmarks: a global CP and
//! zone CPs on loopback ports chosen at run time, each with its own data directory, always ended
//! when dropped; their REST APIs; the Dataplanes the benchmarks register; and the CPU and memory
//! of a process from /proc.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};

use crate::procs::{ChildGuard, free_port, log_tail, workspace_binary};
use crate::sim::ProxySpec;

pub const MESH: &str = "default";

/// A running control plane.
pub struct ControlPlane {
    pub name: String,
    process: ChildGuard,
    pub log: PathBuf,
    pub data_dir: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub api: String,
    /// xDS port (zone CPs).
    pub xds_port: u16,
    /// KDS port (global CP).
    pub kds_port: u16,
    http: reqwest::Client,
}

/// Where a zone CP finds its global.
pub struct GlobalLink<'a> {
    pub zone: String,
    pub kds_port: u16,
    pub ca_file: PathBuf,
    pub token: &'a str,
}

impl ControlPlane {
    /// Starts `atoll-global-cp run`.
    pub async fn start_global(dir: &Path, store: &str) -> Result<ControlPlane> {
        Self::start_global_on(dir, store, free_port()?).await
    }

    /// Like [`ControlPlane::start_global`], serving KDS on `kds_port` (a restart keeps it).
    pub async fn start_global_on(dir: &Path, store: &str, kds_port: u16) -> Result<ControlPlane> {
        Self::start(
            "atoll-global-cp",
            "global",
            dir,
            store,
            vec![("ATOLL_KDS_ADDRESS".into(), format!("127.0.0.1:{kds_port}"))],
            0,
            kds_port,
        )
        .await
    }

    /// Starts `atoll-zone-cp run`, standalone or linked to a global. Proxies authenticate with
    /// nothing (`ATOLL_DP_AUTH=none`, benchmarks only).
    pub async fn start_zone(
        dir: &Path,
        name: &str,
        store: &str,
        global: Option<GlobalLink<'_>>,
    ) -> Result<ControlPlane> {
        Self::start_zone_on(dir, name, store, global, free_port()?).await
    }

    /// Like [`ControlPlane::start_zone`], serving xDS on `xds_port` (a restart keeps its port,
    /// so the proxies' Envoys find it again).
    pub async fn start_zone_on(
        dir: &Path,
        name: &str,
        store: &str,
        global: Option<GlobalLink<'_>>,
        xds_port: u16,
    ) -> Result<ControlPlane> {
        let mut env = vec![
            (
                "ATOLL_XDS_ADDRESS".to_string(),
                format!("127.0.0.1:{xds_port}"),
            ),
            ("ATOLL_DP_AUTH".to_string(), "none".to_string()),
            (
                "ATOLL_DATAPLANE_OFFLINE_GRACE".to_string(),
                "1h".to_string(),
            ),
        ];
        if let Some(link) = global {
            let token_file = dir.join(format!("{name}.zone-token"));
            std::fs::write(&token_file, link.token)
                .with_context(|| format!("writing {}", token_file.display()))?;
            env.extend([
                ("ATOLL_ZONE".to_string(), link.zone),
                (
                    "ATOLL_GLOBAL_ADDRESS".to_string(),
                    format!("grpcs://127.0.0.1:{}", link.kds_port),
                ),
                (
                    "ATOLL_GLOBAL_CA_FILE".to_string(),
                    link.ca_file.display().to_string(),
                ),
                (
                    "ATOLL_ZONE_TOKEN_FILE".to_string(),
                    token_file.display().to_string(),
                ),
            ]);
        }
        Self::start("atoll-zone-cp", name, dir, store, env, xds_port, 0).await
    }

    async fn start(
        binary: &str,
        name: &str,
        dir: &Path,
        store: &str,
        env: Vec<(String, String)>,
        xds_port: u16,
        kds_port: u16,
    ) -> Result<ControlPlane> {
        let path = workspace_binary(binary)?;
        let data_dir = dir.join(name);
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let (api_port, diag_port) = (free_port()?, free_port()?);
        let mut cmd = Command::new(&path);
        cmd.arg("run")
            .env_clear()
            .env("ATOLL_API_ADDRESS", format!("127.0.0.1:{api_port}"))
            .env(
                "ATOLL_API_HTTPS_ADDRESS",
                format!("127.0.0.1:{}", free_port()?),
            )
            .env(
                "ATOLL_DIAGNOSTICS_ADDRESS",
                format!("127.0.0.1:{diag_port}"),
            )
            .env("ATOLL_DATA_DIR", &data_dir)
            .env("ATOLL_STORE", store)
            .env("ATOLL_LOG_LEVEL", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let log = dir.join(format!("{name}.log"));
        let process = ChildGuard::spawn(cmd, binary, &log, Duration::from_secs(5))?;
        let mut cp = ControlPlane {
            name: name.to_string(),
            process,
            log,
            data_dir,
            api: format!("http://127.0.0.1:{api_port}"),
            xds_port,
            kds_port,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .context("HTTP client")?,
        };
        let started = Instant::now();
        loop {
            cp.check_alive()?;
            if cp
                .http
                .get(&cp.api)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!(
                    "{name} ({binary}) not ready within 30 s; its log:\n{}",
                    log_tail(&cp.log, 4000)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(cp)
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Sends `signal` to the process (`STOP` freezes it, `CONT` thaws it, `KILL` ends it).
    pub fn signal(&self, signal: &str) -> Result<()> {
        self.process.signal(signal)
    }

    /// An error (with the end of its log) when the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        let name = self.name.clone();
        let log = self.log.clone();
        self.process
            .check_alive()
            .with_context(|| format!("{name}; its log:\n{}", log_tail(&log, 4000)))
    }

    /// Waits (at most `limit`) until this CP is idle: under 10% of a core over half a second.
    /// Returns the seconds waited.
    pub async fn wait_quiet(&mut self, ticks: f64, limit: Duration) -> Result<f64> {
        let started = Instant::now();
        let mut last = cpu_seconds(self.pid(), ticks)?;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            self.check_alive()?;
            let now = cpu_seconds(self.pid(), ticks)?;
            if now - last < 0.05 {
                return Ok(started.elapsed().as_secs_f64());
            }
            last = now;
            if started.elapsed() > limit {
                bail!("{} still busy after {limit:?}", self.name);
            }
        }
    }

    /// `PUT path` with a JSON body; an error unless 2xx.
    pub async fn put(&self, path: &str, body: &Value) -> Result<()> {
        let response = self
            .http
            .put(format!("{}{path}", self.api))
            .json(body)
            .send()
            .await
            .with_context(|| format!("PUT {path} on {}", self.name))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            bail!("PUT {path} on {}: {status}: {text}", self.name);
        }
        Ok(())
    }

    /// `GET path`: the status and the JSON body (Null when not JSON).
    pub async fn get(&self, path: &str) -> Result<(u16, Value)> {
        let response = self
            .http
            .get(format!("{}{path}", self.api))
            .send()
            .await
            .with_context(|| format!("GET {path} on {}", self.name))?;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// A zone token minted on this (global) CP.
    pub async fn zone_token(&self, zone: &str) -> Result<String> {
        let response = self
            .http
            .post(format!("{}/tokens/zone", self.api))
            .json(&json!({"zone": zone, "scope": "cp"}))
            .send()
            .await
            .context("POST /tokens/zone")?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("POST /tokens/zone for {zone}: {status}: {text}");
        }
        Ok(text.trim().to_string())
    }

    /// The PEM CA of this CP's xDS server certificate.
    pub fn xds_ca_pem(&self) -> Result<String> {
        let path = self.data_dir.join("xds-tls").join("ca.pem");
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// Registers `docs` through the REST API, `concurrency` requests at a time, printing
    /// progress.
    pub async fn register_dataplanes(&self, docs: &[Value], concurrency: usize) -> Result<()> {
        let started = Instant::now();
        let mut done = 0usize;
        let mut puts = futures::stream::iter(docs.iter().map(|doc| async move {
            let name = doc["name"].as_str().unwrap_or_default();
            self.put(&format!("/meshes/{MESH}/dataplanes/{name}"), doc)
                .await
        }))
        .buffer_unordered(concurrency.max(1));
        let mut last_print = Instant::now();
        while let Some(result) = puts.next().await {
            result?;
            done += 1;
            if last_print.elapsed() > Duration::from_secs(5) {
                eprintln!(
                    "  ... {}: {done}/{} dataplanes registered",
                    self.name,
                    docs.len()
                );
                last_print = Instant::now();
            }
        }
        eprintln!(
            "{}: {} dataplanes registered in {:.1} s",
            self.name,
            docs.len(),
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Waits (at most `limit`) until `GET path` answers 200 and `ok` accepts the body.
    pub async fn wait_until(
        &mut self,
        path: &str,
        what: &str,
        limit: Duration,
        ok: impl Fn(&Value) -> bool,
    ) -> Result<()> {
        let started = Instant::now();
        loop {
            self.check_alive()?;
            if let Ok((200, body)) = self.get(path).await
                && ok(&body)
            {
                return Ok(());
            }
            if started.elapsed() > limit {
                bail!(
                    "{}: {what} not seen within {limit:?} (GET {path}); its log:\n{}",
                    self.name,
                    log_tail(&self.log, 3000)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The mesh every benchmark uses: builtin CA, so every proxy gets a certificate.
pub fn mesh_doc() -> Value {
    json!({"type": "Mesh", "name": MESH, "mtls": {"enabledBackend": "ca-1",
        "backends": [{"name": "ca-1", "type": "builtin"}]}})
}

/// A mesh-wide MeshTrafficPermission admitting (`allow`) or refusing every client.
pub fn permission_doc(allow: bool) -> Value {
    json!({"type": "MeshTrafficPermission", "name": "bench-all", "mesh": MESH, "spec": {
        "targetRef": {"kind": "Mesh"},
        "from": [{"targetRef": {"kind": "Mesh"},
                  "default": {"action": if allow { "Allow" } else { "Deny" }}}]
    }})
}

/// A MeshTimeout for traffic to `service` from every proxy, with this connection timeout.
pub fn timeout_doc(service: &str, connect_ms: u64) -> Value {
    json!({"type": "MeshTimeout", "name": format!("bench-timeout-{service}"), "mesh": MESH, "spec": {
        "targetRef": {"kind": "Mesh"},
        "to": [{"targetRef": {"kind": "MeshService", "name": service},
                "default": {"connectionTimeout": format!("{connect_ms}ms")}}]
    }})
}

pub fn service_name(i: usize) -> String {
    format!("svc-{i}")
}

/// Dataplane `i` of zone `zone` in a mesh of `services` services: one HTTP inbound (service
/// `i % services`) and 2 to 5 outbounds to other services (fewer if the mesh has fewer).
pub fn dataplane(zone: usize, i: usize, services: usize) -> (Value, ProxySpec) {
    let name = format!("dp-z{zone}-{i}");
    let own = i % services;
    // A fixed scramble of i, so outbound counts and targets vary but every run is the same.
    let h = (i as u64)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .rotate_left(17);
    let count = (2 + (h % 4) as usize).min(services.saturating_sub(1));
    let start = (h >> 8) as usize % services;
    let mut outbound_services = Vec::new();
    let mut k = 0;
    while outbound_services.len() < count {
        let s = (start + k) % services;
        k += 1;
        if s != own {
            outbound_services.push(service_name(s));
        }
    }
    let outbounds: Vec<Value> = outbound_services
        .iter()
        .enumerate()
        .map(|(j, s)| json!({"port": 10001 + j, "tags": {"kuma.io/service": s}}))
        .collect();
    let doc = json!({
        "type": "Dataplane", "mesh": MESH, "name": name,
        "networking": {
            "address": format!("10.{}.{}.{}", zone % 256, (i >> 8) & 255, i & 255),
            "inbound": [{"port": 8080, "servicePort": 80, "tags": {
                "kuma.io/service": service_name(own), "kuma.io/protocol": "http"}}],
            "outbound": outbounds,
        }
    });
    let spec = ProxySpec {
        node_id: format!("{MESH}.{name}"),
        expected_listeners: 1 + outbound_services.len(),
        outbound_services,
    };
    (doc, spec)
}

/// Resident memory of a process in bytes (VmRSS).
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS in /proc/PID/status")?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .context("unreadable VmRSS")?;
    Ok(kb * 1024)
}

/// CPU seconds (user + system) a process has used.
pub fn cpu_seconds(pid: u32, ticks_per_s: f64) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("unreadable /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Result<f64> {
        fields
            .get(n - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .with_context(|| format!("field {n} of /proc/{pid}/stat"))
    };
    Ok((field(14)? + field(15)?) / ticks_per_s)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 when unknown).
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// The `--store` choice as each control plane's `ATOLL_STORE`: `sqlite` (a file in its data
/// directory), `memory`, or `postgres` (a fresh database per control plane, made through
/// `ATOLL_TEST_POSTGRES_URL` and dropped at the end).
pub struct Stores {
    urls: Vec<String>,
    done: Option<watch::Sender<bool>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Stores {
    pub async fn new(kind: &str, count: usize) -> Result<Stores> {
        match kind {
            "sqlite" => Ok(Stores {
                urls: vec!["sqlite://".into(); count],
                done: None,
                tasks: vec![],
            }),
            "memory" => Ok(Stores {
                urls: vec!["memory".into(); count],
                done: None,
                tasks: vec![],
            }),
            "postgres" => {
                if std::env::var_os("ATOLL_TEST_POSTGRES_URL").is_none() {
                    bail!(
                        "--store postgres needs ATOLL_TEST_POSTGRES_URL (an admin URL; see BENCHMARKS.md)"
                    );
                }
                let (done_tx, done_rx) = watch::channel(false);
                let mut urls = Vec::new();
                let mut tasks = Vec::new();
                for _ in 0..count {
                    let (url_tx, url_rx) = oneshot::channel();
                    let mut done = done_rx.clone();
                    tasks.push(tokio::spawn(
                        atoll_test_support::postgres::with_postgres_database(
                            "bench",
                            move |url| async move {
                                let _ = url_tx.send(url);
                                let _ = done.wait_for(|d| *d).await;
                            },
                        ),
                    ));
                    urls.push(
                        tokio::time::timeout(Duration::from_secs(30), url_rx)
                            .await
                            .context("no PostgreSQL database within 30 s")?
                            .context("cannot create a PostgreSQL database")?,
                    );
                }
                Ok(Stores {
                    urls,
                    done: Some(done_tx),
                    tasks,
                })
            }
            other => bail!("unknown store {other:?}: use sqlite, postgres or memory"),
        }
    }

    pub fn url(&self, i: usize) -> &str {
        self.urls.get(i).map_or("memory", String::as_str)
    }

    /// Drops the PostgreSQL databases (call after the control planes stopped).
    pub async fn finish(mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.send(true);
            for t in self.tasks.drain(..) {
                let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
            }
        }
    }
}
