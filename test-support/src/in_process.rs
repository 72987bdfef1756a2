//! Global and zone control planes running inside the test process: the same runtime as the
//! binaries (REST API, store, KDS and xDS servers, real gRPC over TLS) on loopback listeners the
//! harness binds itself, so no other process can take a port between picking and binding it.
//! Each control plane has its own data directory; `stop` shuts one down as SIGTERM would.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::net::TcpListener;

use atoll_cp::extension::StartHook;
use atoll_cp::{Config, ConfigArgs, ControlPlane, Mode};
use atoll_identity::Scope;

use crate::{PATIENCE, eventually, scaled};

/// One control plane in this process, and an HTTP client for its REST API.
pub struct Cp {
    cp: Option<ControlPlane>,
    /// `http://127.0.0.1:PORT` of its REST API.
    pub api: String,
    /// Its xDS address (zones only).
    pub xds: Option<SocketAddr>,
    /// Its data directory.
    pub data_dir: PathBuf,
    http: reqwest::Client,
}

impl Cp {
    pub fn store(&self) -> &atoll_store::SharedStore {
        &self
            .cp
            .as_ref()
            .expect("the control plane is running")
            .store
    }

    /// Shuts the control plane down (a no-op the second time).
    pub async fn stop(&mut self) {
        if let Some(cp) = self.cp.take() {
            tokio::time::timeout(scaled(PATIENCE), cp.stop())
                .await
                .expect("the control plane stops in time");
        }
    }

    /// PUT a document: (status, body; Null if none).
    pub async fn try_put(&self, path: &str, doc: &Value) -> (u16, Value) {
        let request = self.http.put(format!("{}{path}", self.api)).json(doc);
        answer(request, "PUT", path).await
    }

    /// PUT a document that must be accepted.
    pub async fn put(&self, path: &str, doc: Value) {
        let (status, body) = self.try_put(path, &doc).await;
        assert!((200..300).contains(&status), "PUT {path}: {status} {body}");
    }

    /// DELETE: (status, body; Null if none).
    pub async fn try_delete(&self, path: &str) -> (u16, Value) {
        let request = self.http.delete(format!("{}{path}", self.api));
        answer(request, "DELETE", path).await
    }

    /// DELETE that must succeed.
    pub async fn delete(&self, path: &str) {
        let (status, body) = self.try_delete(path).await;
        assert!(
            (200..300).contains(&status),
            "DELETE {path}: {status} {body}"
        );
    }

    /// POST a document: (status, body; Null if none).
    pub async fn post(&self, path: &str, doc: Value) -> (u16, Value) {
        let request = self.http.post(format!("{}{path}", self.api)).json(&doc);
        answer(request, "POST", path).await
    }

    /// POST a document to an endpoint that answers text (tokens): (status, text).
    pub async fn post_text(&self, path: &str, doc: Value) -> (u16, String) {
        let resp = self
            .http
            .post(format!("{}{path}", self.api))
            .json(&doc)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    /// GET: (status, body; Null if none).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let request = self.http.get(format!("{}{path}", self.api));
        answer(request, "GET", path).await
    }

    /// The `items` of a list that must answer 200.
    pub async fn items(&self, path: &str) -> Vec<Value> {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body["items"].as_array().cloned().unwrap_or_default()
    }
}

async fn answer(request: reqwest::RequestBuilder, method: &str, path: &str) -> (u16, Value) {
    let resp = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(scaled(Duration::from_secs(10)))
        .build()
        .expect("HTTP client")
}

async fn bind(what: &str, address: Option<SocketAddr>) -> TcpListener {
    let address = address.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    TcpListener::bind(address)
        .await
        .unwrap_or_else(|e| panic!("bind the {what} listener on {address}: {e}"))
}

async fn start(mode: Mode, args: ConfigArgs, hook: StartHook, xds: Option<SocketAddr>) -> Cp {
    let data_dir = args.data_dir.clone().expect("a data directory");
    let config = Config::resolve(mode, &args).expect("the configuration resolves");
    let api = bind("API", None).await;
    let diagnostics = bind("diagnostics", None).await;
    let cp = ControlPlane::start_with(config, api, diagnostics, Some(hook))
        .await
        .expect("the control plane starts");
    Cp {
        api: format!("http://{}", cp.api_address),
        cp: Some(cp),
        xds,
        data_dir,
        http: client(),
    }
}

/// A global control plane on SQLite in `data_dir`, serving KDS on a fresh port; answers it and
/// its KDS address.
pub async fn start_global(data_dir: &Path) -> (Cp, SocketAddr) {
    start_global_with(data_dir, ConfigArgs::default()).await
}

/// Like [`start_global`], with further settings in `args`; `args.kds_address`, when set, is
/// bound again (a restart on the address zones know).
pub async fn start_global_with(data_dir: &Path, args: ConfigArgs) -> (Cp, SocketAddr) {
    let listener = bind("KDS", args.kds_address).await;
    let kds = listener.local_addr().expect("KDS address");
    let args = ConfigArgs {
        data_dir: Some(data_dir.to_path_buf()),
        kds_address: Some(kds),
        ..args
    };
    let hook: StartHook = Box::new(move |ctx| Box::pin(atoll_global_cp::start_on(ctx, listener)));
    (start(Mode::Global, args, hook, None).await, kds)
}

/// Like [`start_global`], with the Mesh `default` created.
pub async fn start_global_with_mesh(data_dir: &Path) -> (Cp, SocketAddr) {
    let (global, kds) = start_global(data_dir).await;
    global
        .put(
            "/meshes/default",
            serde_json::json!({"type": "Mesh", "name": "default"}),
        )
        .await;
    (global, kds)
}

/// A MeshTrafficPermission `name` of mesh `default` that allows every client everywhere.
pub fn allow_all_permission(name: &str) -> Value {
    serde_json::json!({"type": "MeshTrafficPermission", "name": name, "mesh": "default", "spec": {
        "targetRef": {"kind": "Mesh"},
        "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]
    }})
}

/// A Dataplane `name` of mesh `default` at `address`: one inbound of service `backend`.
pub fn backend_dataplane(name: &str, address: &str) -> Value {
    serde_json::json!({"type": "Dataplane", "mesh": "default", "name": name, "networking": {
        "address": address,
        "inbound": [{"port": 8080, "servicePort": 8081, "tags": {"kuma.io/service": "backend"}}],
    }})
}

/// A zone control plane `name` (memory store, data in `dir/name`) linked to the global at `kds`
/// whose data directory is `global_dir`, with the zone token `token`.
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
    std::fs::create_dir_all(&data_dir).expect("zone data directory");
    let token_file = data_dir.join("zone-token");
    std::fs::write(&token_file, token).expect("zone token file");
    let ca_file = global_dir.join("kds-tls").join("ca.pem");
    assert!(ca_file.exists(), "global wrote DATA_DIR/kds-tls/ca.pem");
    start_standalone_zone(
        &data_dir,
        ConfigArgs {
            zone: Some(name.into()),
            global_address: Some(format!("grpcs://127.0.0.1:{}", kds.port())),
            global_ca_file: Some(ca_file),
            zone_token_file: Some(token_file),
            ..args
        },
    )
    .await
}

/// A zone control plane on its own (no global unless `args` names one), memory store unless
/// `args` says otherwise, data in `data_dir`, xDS on a fresh port ([`Cp::xds`]).
pub async fn start_standalone_zone(data_dir: &Path, args: ConfigArgs) -> Cp {
    let listener = bind("xDS", None).await;
    let xds = listener.local_addr().expect("xDS address");
    let args = ConfigArgs {
        data_dir: Some(data_dir.to_path_buf()),
        store: args.store.clone().or(Some("memory".into())),
        xds_address: Some(xds),
        ..args
    };
    let hook: StartHook = Box::new(move |ctx| Box::pin(atoll_zone_cp::start_on(ctx, listener)));
    start(Mode::Zone, args, hook, Some(xds)).await
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

/// A `cp` zone token for `zone`, valid for an hour from now.
pub async fn zone_token(global: &Cp, zone: &str) -> String {
    zone_token_at(global, zone, Duration::from_secs(3600), Utc::now()).await
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
    eventually(
        &format!("zone {zone} online = {online}"),
        PATIENCE,
        || async {
            // Before its first connect the zone is not registered (404).
            let (status, o) = global.get(&format!("/zones/{zone}/_overview")).await;
            (status == 200 && o["zoneInsight"]["online"] == online).then_some(o)
        },
    )
    .await
}

/// Everything the test process logged since the capture started (every control plane of the
/// process logs here).
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

/// Appends to a [`Logs`].
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
