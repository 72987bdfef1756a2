//! `dataplane`: the latency two sidecars add to a request, in one run, on three paths from a
//! client to a fast in-process HTTP/1.1 backend:
//!
//! - `direct`: client -> backend;
//! - `atoll`: client -> Envoy (outbound) -> mesh mTLS -> Envoy (inbound) -> backend, both Envoys
//!   configured by a real atoll-zone-cp through atoll-dp, as in production;
//! - `floor`: the same two hops through two Envoys with a minimal hand-written static config
//!   (HTTP connection manager + router, mTLS with certificates made here, HTTP/1.1 upstream).
//!
//! The load is open-loop: each keep-alive connection has a fixed schedule of send times (the
//! connections' schedules interleave so requests are evenly spaced at the given rate). A request
//! is timed from its scheduled send time when it had to wait for the previous response on its
//! connection (so queueing counts), otherwise from its actual send (so the sleep's own overshoot
//! does not). Rounds alternate the three paths (rotating their order) so that the machine's noise
//! hits all alike; a path's added latency is its percentile minus the direct percentile of the
//! same round, and the reported value is the median over rounds.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::floor::AbortOnDrop;
use crate::procs::{
    ChildGuard, envoy_binary, envoy_command, free_port, log_tail, workspace_binary,
};
use crate::stats::Samples;

#[derive(Debug, Args)]
pub struct DataplaneArgs {
    /// Requests per second on each path (evenly spaced across the connections).
    #[arg(long, default_value_t = 1000)]
    rps: u32,
    /// Total load time per path, split over the rounds (e.g. 30s, 500ms, 2m).
    #[arg(long, default_value = "30s", value_parser = atoll_core::types::parse_flag_duration)]
    duration: Duration,
    /// Keep-alive client connections per path.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Rounds; each runs every path for duration/rounds.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Write Atoll's generated config of both proxies and the floor's bootstraps to this directory.
    #[arg(long, value_name = "DIR")]
    dump_config: Option<std::path::PathBuf>,
}

const PATHS: [&str; 3] = ["direct", "atoll", "floor"];

pub async fn run(args: DataplaneArgs) -> Result<()> {
    if args.rps == 0 || args.connections == 0 || args.rounds == 0 {
        bail!("--rps, --connections and --rounds must be positive");
    }
    let envoy = envoy_binary()?;
    let zone_cp = workspace_binary("atoll-zone-cp")?;
    let dp = workspace_binary("atoll-dp")?;
    let dir = tempfile::tempdir().context("temporary directory")?;

    let (backend, backend_task) = backend().await?;
    let _backend_guard = AbortOnDrop(backend_task);

    let mut atoll = AtollMesh::start(dir.path(), &zone_cp, &dp, &envoy, backend.port()).await?;
    let floor = FloorMesh::start(dir.path(), &envoy, backend.port()).await?;
    if let Some(out) = &args.dump_config {
        std::fs::create_dir_all(out)?;
        for name in ["client-1", "backend-1"] {
            let config = atoll.config(name).await?;
            std::fs::write(
                out.join(format!("atoll-{name}.json")),
                serde_json::to_string_pretty(&config)?,
            )?;
        }
        std::fs::write(
            out.join("floor-client.json"),
            serde_json::to_string_pretty(&floor.client_bootstrap)?,
        )?;
        std::fs::write(
            out.join("floor-server.json"),
            serde_json::to_string_pretty(&floor.server_bootstrap)?,
        )?;
        println!("configs written to {}", out.display());
    }
    let targets = [
        backend,
        SocketAddr::from(([127, 0, 0, 1], atoll.outbound)),
        SocketAddr::from(([127, 0, 0, 1], floor.outbound)),
    ];

    let per_round = args.duration / args.rounds as u32;
    println!(
        "dataplane: rps={} connections={} rounds={} x {:?} per path (direct, atoll, floor)",
        args.rps, args.connections, args.rounds, per_round
    );
    // added[path][round] = (p50, p99) minus direct's, microseconds.
    let mut added: [Vec<(f64, f64)>; 3] = Default::default();
    let mut pooled: [Samples; 3] = Default::default();
    let mut errors = [0usize; 3];
    for round in 0..args.rounds {
        let mut pct = [(0.0, 0.0); 3];
        for k in 0..PATHS.len() {
            let path = (round + k) % PATHS.len();
            let (rps, conns, target) = (args.rps, args.connections, targets[path]);
            let mut result =
                tokio::task::spawn_blocking(move || load(target, rps, per_round, conns))
                    .await
                    .context("load thread")?
                    .with_context(|| format!("load on path {}", PATHS[path]))?;
            pct[path] = (
                result.samples.percentile_us(50.0),
                result.samples.percentile_us(99.0),
            );
            println!(
                "round {round} {}",
                result
                    .samples
                    .line(&format!("{:<6} errors={}", PATHS[path], result.errors))
            );
            errors[path] += result.errors;
            pooled[path].extend(result.samples);
        }
        for path in 0..PATHS.len() {
            added[path].push((pct[path].0 - pct[0].0, pct[path].1 - pct[0].1));
        }
        atoll.check_alive()?;
    }

    for (path, samples) in pooled.iter_mut().enumerate() {
        println!(
            "all rounds {} errors={}",
            samples.line(PATHS[path]),
            errors[path]
        );
    }
    let median = |v: &[(f64, f64)], p99: bool| {
        let mut xs: Vec<f64> = v.iter().map(|(a, b)| if p99 { *b } else { *a }).collect();
        xs.sort_by(f64::total_cmp);
        xs[xs.len() / 2] / 1e3
    };
    let (a50, a99) = (median(&added[1], false), median(&added[1], true));
    let (f50, f99) = (median(&added[2], false), median(&added[2], true));
    let ratio = |a: f64, f: f64| if f > 0.0 { a / f } else { f64::NAN };
    println!(
        "pooled added (path percentile over all rounds - direct's): atoll p50_ms={:.3} p99_ms={:.3} floor p50_ms={:.3} p99_ms={:.3}",
        (pooled[1].percentile_us(50.0) - pooled[0].percentile_us(50.0)) / 1e3,
        (pooled[1].percentile_us(99.0) - pooled[0].percentile_us(99.0)) / 1e3,
        (pooled[2].percentile_us(50.0) - pooled[0].percentile_us(50.0)) / 1e3,
        (pooled[2].percentile_us(99.0) - pooled[0].percentile_us(99.0)) / 1e3,
    );
    println!("ratio_p50={:.2} (median over rounds)", ratio(a50, f50));
    println!(
        "dataplane rps={} added_p50_ms={a50:.3} added_p99_ms={a99:.3} floor_added_p50_ms={f50:.3} floor_added_p99_ms={f99:.3} ratio_p99={:.2}",
        args.rps,
        ratio(a99, f99)
    );
    drop(floor);
    drop(atoll);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The backend and the load generator.

/// An HTTP/1.1 server on loopback answering every request head with a small 200.
pub(crate) async fn backend() -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        const RESPONSE: &[u8] =
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok";
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut filled = 0;
                loop {
                    if filled == buf.len() {
                        return; // a request head larger than 16 KiB: not ours
                    }
                    let n = match socket.read(&mut buf[filled..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    filled += n;
                    // Answer each complete request head (no request bodies here).
                    while let Some(end) = find(&buf[..filled], b"\r\n\r\n") {
                        buf.copy_within(end + 4..filled, 0);
                        filled -= end + 4;
                        if socket.write_all(RESPONSE).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    Ok((addr, task))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One keep-alive HTTP/1.1 client connection (blocking: one thread each, no async scheduler
/// between the timer and the socket).
struct Conn {
    addr: SocketAddr,
    stream: TcpStream,
    buf: Vec<u8>,
}

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nhost: backend\r\nuser-agent: atoll-bench\r\n\r\n";

impl Conn {
    fn connect(addr: SocketAddr) -> Result<Conn> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(Conn {
            addr,
            stream,
            buf: vec![0u8; 16 * 1024],
        })
    }

    /// One request and its whole response; an error on anything but a 200.
    fn request(&mut self) -> Result<()> {
        self.stream.write_all(REQUEST)?;
        let mut filled = 0;
        let head_end = loop {
            if filled == self.buf.len() {
                bail!("response head larger than the buffer");
            }
            let n = self.stream.read(&mut self.buf[filled..])?;
            if n == 0 {
                bail!("connection closed");
            }
            filled += n;
            if let Some(end) = find(&self.buf[..filled], b"\r\n\r\n") {
                break end + 4;
            }
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).context("non-UTF-8 head")?;
        let status_ok = head.starts_with("HTTP/1.1 200");
        let length = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .context("response without content-length")?;
        let close = head.to_ascii_lowercase().contains("connection: close");
        let status_line = head.lines().next().unwrap_or_default().to_string();
        let total = head_end + length;
        if total > self.buf.len() {
            self.buf.resize(total, 0);
        }
        while filled < total {
            let n = self.stream.read(&mut self.buf[filled..total])?;
            if n == 0 {
                bail!("connection closed in the body");
            }
            filled += n;
        }
        let result = if status_ok {
            Ok(())
        } else {
            Err(anyhow::anyhow!(
                "{status_line} {}",
                String::from_utf8_lossy(&self.buf[head_end..total])
            ))
        };
        if close {
            *self = Conn::connect(self.addr)?;
        }
        result
    }
}

struct Load {
    samples: Samples,
    errors: usize,
}

/// Open-loop load: `rps` requests a second for `duration` over `conns` keep-alive connections.
fn load(addr: SocketAddr, rps: u32, duration: Duration, conns: usize) -> Result<Load> {
    let mut connections = Vec::with_capacity(conns);
    for _ in 0..conns {
        let mut c = Conn::connect(addr)?;
        c.request().context("warm-up request")?;
        connections.push(c);
    }
    let rps = f64::from(rps);
    let period = Duration::from_secs_f64(conns as f64 / rps);
    let per_conn = ((duration.as_secs_f64() * rps) / conns as f64)
        .round()
        .max(1.0) as usize;
    let start = Instant::now() + Duration::from_millis(20);
    let results: Vec<(Samples, usize)> = std::thread::scope(|scope| {
        let handles: Vec<_> = connections
            .into_iter()
            .enumerate()
            .map(|(i, mut conn)| {
                scope.spawn(move || {
                    let offset = Duration::from_secs_f64(i as f64 / rps);
                    let mut samples = Samples::default();
                    let mut errors = 0;
                    let mut prev_done = Instant::now();
                    for k in 0..per_conn {
                        let scheduled = start + offset + period * k as u32;
                        let now = Instant::now();
                        if scheduled > now {
                            std::thread::sleep(scheduled - now);
                        }
                        // Late because of the previous response: count from the schedule.
                        // Late because the sleep overshot: count from the actual send.
                        let begin = if prev_done > scheduled {
                            scheduled
                        } else {
                            Instant::now()
                        };
                        match conn.request() {
                            Ok(()) => samples.push(begin.elapsed()),
                            Err(_) => {
                                errors += 1;
                                if let Ok(c) = Conn::connect(conn.addr) {
                                    conn = c;
                                }
                            }
                        }
                        prev_done = Instant::now();
                    }
                    (samples, errors)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut out = Load {
        samples: Samples::default(),
        errors: 0,
    };
    for (s, e) in results {
        out.samples.extend(s);
        out.errors += e;
    }
    Ok(out)
}

/// Polls a path (bounded) until a request through it succeeds.
async fn wait_for_path(port: u16, limit: Duration) -> Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < limit {
        let attempt =
            tokio::task::spawn_blocking(move || Conn::connect(addr).and_then(|mut c| c.request()))
                .await?;
        match attempt {
            Ok(()) => return Ok(()),
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("no successful request through 127.0.0.1:{port} within {limit:?}: {last}")
}

// ---------------------------------------------------------------------------------------------
// The Atoll path: a zone CP and two atoll-dp sidecars.

struct AtollMesh {
    // Dropped in field order: the proxies before the control plane.
    dps: Vec<ChildGuard>,
    cp: ChildGuard,
    api: String,
    outbound: u16,
    http: reqwest::Client,
}

impl AtollMesh {
    async fn start(
        dir: &Path,
        zone_cp: &Path,
        dp: &Path,
        envoy: &Path,
        app_port: u16,
    ) -> Result<AtollMesh> {
        let data = dir.join("cp");
        let (api_port, diag_port, xds_port) = (free_port()?, free_port()?, free_port()?);
        let mut cmd = Command::new(zone_cp);
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
            .env("ATOLL_XDS_ADDRESS", format!("127.0.0.1:{xds_port}"))
            .env("ATOLL_DATA_DIR", &data)
            .env("ATOLL_DATAPLANE_OFFLINE_GRACE", "1h");
        let cp_log = dir.join("zone-cp.log");
        let cp = ChildGuard::spawn(cmd, "atoll-zone-cp", &cp_log, Duration::from_secs(5))?;
        let mut mesh = AtollMesh {
            dps: Vec::new(),
            cp,
            api: format!("http://127.0.0.1:{api_port}"),
            outbound: free_port()?,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
        };
        let started = Instant::now();
        loop {
            mesh.cp
                .check_alive()
                .with_context(|| log_tail(&cp_log, 4000))?;
            if mesh
                .http
                .get(&mesh.api)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(20) {
                bail!(
                    "atoll-zone-cp not ready within 20 s:\n{}",
                    log_tail(&cp_log, 4000)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        mesh.put(
            "/meshes/default",
            json!({"type": "Mesh", "name": "default", "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}}),
        )
        .await?;
        mesh.put(
            "/meshes/default/meshtrafficpermissions/allow-all",
            json!({"type": "MeshTrafficPermission", "name": "allow-all", "mesh": "default", "spec": {
                "targetRef": {"kind": "Mesh"},
                "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]
            }}),
        )
        .await?;

        let ca_file = data.join("xds-tls").join("ca.pem");
        let backend_doc = atoll_test_support::http_dataplane(
            "backend-1",
            "backend",
            free_port()?,
            app_port,
            None,
        );
        let client_doc = atoll_test_support::http_dataplane(
            "client-1",
            "client",
            free_port()?,
            free_port()?,
            Some((mesh.outbound, "backend")),
        );
        for (name, doc) in [("backend-1", backend_doc), ("client-1", client_doc)] {
            let token = mesh.token(name).await?;
            let dp_file = dir.join(format!("{name}.yaml"));
            std::fs::write(&dp_file, doc)?;
            let token_file = dir.join(format!("{name}.token"));
            std::fs::write(&token_file, token)?;
            let mut cmd = Command::new(dp);
            cmd.arg("run")
                .arg("--cp-address")
                .arg(format!("https://127.0.0.1:{xds_port}"))
                .arg("--dataplane-file")
                .arg(&dp_file)
                .arg("--dataplane-token-file")
                .arg(&token_file)
                .arg("--ca-cert-file")
                .arg(&ca_file)
                .arg("--envoy-binary")
                .arg(envoy)
                .args(["--admin-port", &free_port()?.to_string()])
                .args([
                    "--cp-connect-timeout",
                    "10s",
                    "--envoy-log-level",
                    "warning",
                ])
                // The same Envoy flags as the floor's: one worker thread.
                .args(["--", "--concurrency", "1"]);
            let log = dir.join(format!("{name}.log"));
            mesh.dps
                .push(ChildGuard::spawn(cmd, name, &log, Duration::from_secs(12))?);
        }
        if let Err(e) = wait_for_path(mesh.outbound, Duration::from_secs(30)).await {
            let mut logs = String::new();
            for name in ["zone-cp", "backend-1", "client-1"] {
                logs.push_str(&format!(
                    "--- {name}\n{}\n",
                    log_tail(&dir.join(format!("{name}.log")), 3000)
                ));
            }
            bail!("the Atoll path does not carry traffic: {e:#}\n{logs}");
        }
        Ok(mesh)
    }

    /// An error when a sidecar or the control plane has exited.
    fn check_alive(&mut self) -> Result<()> {
        for dp in &mut self.dps {
            dp.check_alive()?;
        }
        self.cp.check_alive()
    }

    async fn put(&self, path: &str, doc: Value) -> Result<()> {
        let resp = self
            .http
            .put(format!("{}{path}", self.api))
            .json(&doc)
            .send()
            .await?;
        let status = resp.status();
        if !status.is_success() {
            bail!(
                "PUT {path}: {status} {}",
                resp.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    async fn token(&self, name: &str) -> Result<String> {
        let resp = self
            .http
            .post(format!("{}/tokens/dataplane", self.api))
            .json(&json!({"mesh": "default", "name": name, "validFor": "1h"}))
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("POST /tokens/dataplane: {}", resp.status());
        }
        Ok(resp.text().await?)
    }

    async fn config(&self, name: &str) -> Result<Value> {
        Ok(self
            .http
            .get(format!(
                "{}/meshes/default/dataplanes/{name}/_config",
                self.api
            ))
            .send()
            .await?
            .json()
            .await?)
    }
}

// ---------------------------------------------------------------------------------------------
// The floor path: two Envoys with hand-written static bootstraps.

struct FloorMesh {
    _client: ChildGuard,
    _server: ChildGuard,
    outbound: u16,
    client_bootstrap: Value,
    server_bootstrap: Value,
}

struct Identity {
    chain_pem: String,
    key_pem: String,
}

fn mesh_certs() -> Result<(String, Identity, Identity)> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.distinguished_name = DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "atoll-bench floor CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let leaf = |service: &str| -> Result<Identity> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = DistinguishedName::new();
        let uri = format!("spiffe://default/{service}");
        params.subject_alt_names = vec![SanType::URI(uri.try_into()?)];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca)?;
        Ok(Identity {
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    };
    Ok((ca.pem(), leaf("client")?, leaf("backend")?))
}

fn common_tls(ca: &str, id: &Identity, peer_san: Option<&str>) -> Value {
    let mut validation = json!({"trusted_ca": {"inline_string": ca}});
    if let Some(san) = peer_san {
        validation["match_typed_subject_alt_names"] =
            json!([{"san_type": "URI", "matcher": {"exact": san}}]);
    }
    json!({
        "tls_certificates": [{
            "certificate_chain": {"inline_string": id.chain_pem},
            "private_key": {"inline_string": id.key_pem}
        }],
        "validation_context": validation
    })
}

fn static_cluster(name: &str, port: u16, transport_socket: Option<Value>) -> Value {
    let mut c = json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "5s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}
        }}]}]}
    });
    if let Some(ts) = transport_socket {
        c["transport_socket"] = ts;
    }
    c
}

fn http_listener(name: &str, port: u16, cluster: &str, transport_socket: Option<Value>) -> Value {
    let mut chain = json!({"filters": [{
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": name,
            "codec_type": "AUTO",
            "route_config": {"name": name, "virtual_hosts": [{
                "name": name, "domains": ["*"],
                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}]
            }]},
            "http_filters": [{
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
            }]
        }
    }]});
    if let Some(ts) = transport_socket {
        chain["transport_socket"] = ts;
    }
    json!({
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [chain]
    })
}

fn static_bootstrap(node: &str, admin_port: u16, listener: Value, cluster: Value) -> Value {
    json!({
        "node": {"id": node, "cluster": node},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {"listeners": [listener], "clusters": [cluster]}
    })
}

impl FloorMesh {
    async fn start(dir: &Path, envoy: &Path, app_port: u16) -> Result<FloorMesh> {
        let (ca, client_id, server_id) = mesh_certs()?;
        let (outbound, inbound) = (free_port()?, free_port()?);
        let server_bootstrap = static_bootstrap(
            "floor-server",
            free_port()?,
            http_listener(
                "inbound",
                inbound,
                "app",
                Some(json!({
                    "name": "envoy.transport_sockets.tls",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                        "require_client_certificate": true,
                        "common_tls_context": common_tls(&ca, &server_id, None)
                    }
                })),
            ),
            static_cluster("app", app_port, None),
        );
        let client_bootstrap = static_bootstrap(
            "floor-client",
            free_port()?,
            http_listener("outbound", outbound, "mesh", None),
            static_cluster(
                "mesh",
                inbound,
                Some(json!({
                    "name": "envoy.transport_sockets.tls",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                        "common_tls_context": common_tls(&ca, &client_id, Some("spiffe://default/backend"))
                    }
                })),
            ),
        );
        let mut guards = Vec::new();
        for (name, bootstrap) in [
            ("floor-server", &server_bootstrap),
            ("floor-client", &client_bootstrap),
        ] {
            let file = dir.join(format!("{name}.json"));
            std::fs::write(&file, bootstrap.to_string())?;
            guards.push(ChildGuard::spawn(
                envoy_command(envoy, &file, free_port()?),
                name,
                &dir.join(format!("{name}.log")),
                Duration::from_secs(5),
            )?);
        }
        if let Err(e) = wait_for_path(outbound, Duration::from_secs(20)).await {
            bail!(
                "the floor path does not carry traffic: {e:#}\n--- server\n{}\n--- client\n{}",
                log_tail(&dir.join("floor-server.log"), 3000),
                log_tail(&dir.join("floor-client.log"), 3000)
            );
        }
        let client = guards.pop().context("client guard")?;
        let server = guards.pop().context("server guard")?;
        Ok(FloorMesh {
            _client: client,
            _server: server,
            outbound,
            client_bootstrap,
            server_bootstrap,
        })
    }
}
