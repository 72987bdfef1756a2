//! In-process global and zone control planes for the zone tests: real gRPC over TLS on loopback
//! ports chosen at run time, each on its own data directory; plus bounded waits and a capture of
//! the log lines both sides write.

#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::net::TcpListener;

use atoll_cp::extension::StartHook;
use atoll_cp::{Config, ConfigArgs, ControlPlane, Mode};
use atoll_identity::Scope;

/// Every wait is bounded by this.
pub const LIMIT: Duration = Duration::from_secs(30);

pub struct Cp {
    cp: Option<ControlPlane>,
    pub api: String,
    http: reqwest::Client,
}

impl Cp {
    pub fn store(&self) -> &atoll_store::SharedStore {
        &self.cp.as_ref().expect("running").store
    }

    pub async fn stop(&mut self) {
        if let Some(cp) = self.cp.take() {
            tokio::time::timeout(LIMIT, cp.stop())
                .await
                .expect("the control plane stops in time");
        }
    }

    /// PUT a document; answers (status, body).
    pub async fn try_put(&self, path: &str, doc: &Value) -> (u16, Value) {
        let resp = self
            .http
            .put(format!("{}{path}", self.api))
            .json(doc)
            .send()
            .await
            .expect("PUT");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn put(&self, path: &str, doc: Value) {
        let (status, body) = self.try_put(path, &doc).await;
        assert!((200..300).contains(&status), "PUT {path}: {status} {body}");
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .delete(format!("{}{path}", self.api))
            .send()
            .await
            .expect("DELETE");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, doc: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.api))
            .json(&doc)
            .send()
            .await
            .expect("POST");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.api))
            .send()
            .await
            .expect("GET");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn items(&self, path: &str) -> Vec<Value> {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body["items"].as_array().cloned().unwrap_or_default()
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

async fn listeners() -> (TcpListener, TcpListener) {
    (
        TcpListener::bind("127.0.0.1:0").await.expect("bind API"),
        TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind diagnostics"),
    )
}

/// A global control plane on SQLite in `data_dir`, serving KDS on a fresh port.
pub async fn start_global(data_dir: &Path) -> (Cp, SocketAddr) {
    start_global_with(data_dir, ConfigArgs::default()).await
}

/// Like [`start_global`], with further settings in `args`.
pub async fn start_global_with(data_dir: &Path, args: ConfigArgs) -> (Cp, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind KDS");
    let kds = listener.local_addr().expect("KDS address");
    let args = ConfigArgs {
        data_dir: Some(data_dir.to_path_buf()),
        kds_address: Some(kds),
        ..args
    };
    let config = Config::resolve(Mode::Global, &args).expect("config resolves");
    let (api, diag) = listeners().await;
    let hook: StartHook = Box::new(move |ctx| Box::pin(atoll_global_cp::start_on(ctx, listener)));
    let cp = ControlPlane::start_with(config, api, diag, Some(hook))
        .await
        .expect("global starts");
    let g = Cp {
        api: format!("http://{}", cp.api_address),
        cp: Some(cp),
        http: client(),
    };
    (g, kds)
}

/// A zone control plane (memory store) linked to the global at `kds`.
pub async fn start_zone(
    dir: &Path,
    name: &str,
    kds: SocketAddr,
    global_dir: &Path,
    token: &str,
) -> Cp {
    start_zone_with(dir, name, kds, global_dir, token, ConfigArgs::default()).await
}

/// Like [`start_zone`], with further settings in `args`.
pub async fn start_zone_with(
    dir: &Path,
    name: &str,
    kds: SocketAddr,
    global_dir: &Path,
    token: &str,
    args: ConfigArgs,
) -> Cp {
    let data_dir = dir.join(name);
    std::fs::create_dir_all(&data_dir).expect("zone dir");
    let token_file = data_dir.join("zone-token");
    std::fs::write(&token_file, token).expect("token file");
    let ca_file: PathBuf = global_dir.join("kds-tls").join("ca.pem");
    let xds = TcpListener::bind("127.0.0.1:0").await.expect("bind xDS");
    let args = ConfigArgs {
        data_dir: Some(data_dir),
        store: Some("memory".into()),
        zone: Some(name.into()),
        xds_address: Some(xds.local_addr().expect("xDS address")),
        global_address: Some(format!("grpcs://127.0.0.1:{}", kds.port())),
        global_ca_file: Some(ca_file),
        zone_token_file: Some(token_file),
        ..args
    };
    let config = Config::resolve(Mode::Zone, &args).expect("config resolves");
    let (api, diag) = listeners().await;
    let hook: StartHook = Box::new(move |ctx| Box::pin(atoll_zone_cp::start_on(ctx, xds)));
    let cp = ControlPlane::start_with(config, api, diag, Some(hook))
        .await
        .expect("zone starts");
    Cp {
        api: format!("http://{}", cp.api_address),
        cp: Some(cp),
        http: client(),
    }
}

/// A `cp` zone token for `zone`, issued at `issued` and valid for `valid_for`.
pub async fn zone_token_at(
    global: &Cp,
    zone: &str,
    valid_for: Duration,
    issued: DateTime<Utc>,
) -> String {
    atoll_cp::tokens::issue_zone_token(&**global.store(), zone, Scope::Cp, valid_for, issued)
        .await
        .expect("zone token")
}

pub async fn zone_token(global: &Cp, zone: &str) -> String {
    zone_token_at(global, zone, Duration::from_secs(3600), Utc::now()).await
}

/// Polls `check` until it returns `Some`, for at most `LIMIT`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The zone's overview on global.
pub async fn overview(global: &Cp, zone: &str) -> Value {
    let (status, body) = global.get(&format!("/zones/{zone}/_overview")).await;
    assert_eq!(status, 200, "GET /zones/{zone}/_overview: {body}");
    body
}

/// Waits until global says the zone is online (`true`) or offline (`false`); answers the
/// overview.
pub async fn wait_online(global: &Cp, zone: &str, online: bool) -> Value {
    eventually(&format!("zone {zone} online = {online}"), || async {
        // Before its first connect the zone is not registered (404).
        let (status, o) = global.get(&format!("/zones/{zone}/_overview")).await;
        (status == 200 && o["zoneInsight"]["online"] == online).then_some(o)
    })
    .await
}

/// Everything the process logged since it started (both control planes log here).
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub fn text(&self) -> String {
        self.0
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Lines that contain every one of `parts`.
    pub fn lines_with(&self, parts: &[&str]) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .map(str::to_string)
            .collect()
    }
}

pub struct LogWriter(Logs);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = (self.0).0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        LogWriter(self.clone())
    }
}

/// Captures the process's logs (info and up); the same capture for every test of the binary.
pub fn capture_logs() -> Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_writer(logs.clone())
            .with_ansi(false)
            .try_init();
        logs
    })
    .clone()
}
