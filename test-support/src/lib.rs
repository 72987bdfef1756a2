//! Helpers for integration tests that run Atoll's real binaries: free loopback ports, and a
//! control-plane process that is always killed when the test ends (even on panic); a TCP relay
//! that can freeze a link without closing it.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Ports handed out by [`free_port`]: below Linux's ephemeral range (32768-60999), so no
/// outgoing connection (an Envoy dialing its control plane, say) can take one as its source port
/// between the moment it is picked and the moment its process binds it.
const PICK_FROM: std::ops::Range<u16> = 20000..32000;

/// A loopback port that was free a moment ago, picked at random from a range the kernel never
/// uses for outgoing connections (concurrent tests each pick their own).
pub fn free_port() -> u16 {
    try_free_port().expect("a free loopback port")
}

/// Like [`free_port`], for callers that report errors instead of panicking.
pub fn try_free_port() -> std::io::Result<u16> {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let span = u64::from(PICK_FROM.end - PICK_FROM.start);
    for _ in 0..200 {
        // RandomState is seeded randomly per process; the counter varies it per call.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
        h.write_u32(std::process::id());
        let offset = u16::try_from(h.finish() % span).unwrap_or(0);
        let port = PICK_FROM.start + offset;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    // Crowded: let the kernel choose.
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
}

/// A control-plane process (`atoll-global-cp run` or `atoll-zone-cp run`) on loopback ports
/// chosen at run time, configured only through `ATOLL_*` environment variables.
pub struct CpProcess {
    child: Child,
    /// `http://127.0.0.1:PORT` of its REST API.
    pub api: String,
    /// `http://127.0.0.1:PORT` of its diagnostics server.
    pub diagnostics: String,
    /// `https://127.0.0.1:PORT` of its REST API over HTTPS (certificate in `DATA_DIR/api-tls/`).
    pub api_https: String,
}

impl CpProcess {
    /// Starts `binary run` with a clean environment plus `env`.
    pub fn spawn(binary: &str, data_dir: &Path, env: &[(&str, &str)]) -> CpProcess {
        let api_port = free_port();
        let diag_port = free_port();
        let https_port = free_port();
        let mut cmd = Command::new(binary);
        cmd.arg("run")
            .env_clear()
            .env("ATOLL_API_ADDRESS", format!("127.0.0.1:{api_port}"))
            .env("ATOLL_API_HTTPS_ADDRESS", format!("127.0.0.1:{https_port}"))
            .env(
                "ATOLL_DIAGNOSTICS_ADDRESS",
                format!("127.0.0.1:{diag_port}"),
            )
            .env("ATOLL_DATA_DIR", data_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        CpProcess {
            child: cmd.spawn().expect("control plane starts"),
            api: format!("http://127.0.0.1:{api_port}"),
            diagnostics: format!("http://127.0.0.1:{diag_port}"),
            api_https: format!("https://127.0.0.1:{https_port}"),
        }
    }

    /// Waits (at most 10 s) until `GET /` answers; panics if the process exits first.
    pub async fn wait_ready(&mut self) {
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("control plane exited early: {status}");
            }
            if client
                .get(&self.api)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("control plane not ready within 10 s");
    }

    /// Sends SIGTERM and waits (at most 5 s) for a clean exit.
    pub fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "SIGTERM could not be sent");
        for _ in 0..100 {
            if let Ok(Some(exit)) = self.child.try_wait() {
                assert!(
                    exit.success(),
                    "control plane exited with {exit} on SIGTERM"
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("control plane did not stop within 5 s of SIGTERM");
    }
}

impl Drop for CpProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Kuma universal Dataplane on 127.0.0.1 in mesh `default`: one HTTP inbound of `service`
/// (port `inbound`, forwarding to the application on `app`) and, optionally, one outbound
/// (`port`, the service it reaches).
pub fn http_dataplane(
    name: &str,
    service: &str,
    inbound: u16,
    app: u16,
    outbound: Option<(u16, &str)>,
) -> String {
    let mut doc = format!(
        "type: Dataplane\nmesh: default\nname: {name}\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: {inbound}\n    servicePort: {app}\n    tags:\n      kuma.io/service: {service}\n      kuma.io/protocol: http\n"
    );
    if let Some((port, target)) = outbound {
        doc.push_str(&format!(
            "  outbound:\n  - port: {port}\n    tags:\n      kuma.io/service: {target}\n"
        ));
    }
    doc
}

/// A loopback TCP relay to `target` that can be frozen: while frozen it forwards nothing either
/// way and closes nothing (what a hung host or a black-holing network looks like to both ends).
pub struct Relay {
    /// Where to connect instead of the target.
    pub addr: std::net::SocketAddr,
    frozen: watch::Sender<bool>,
    _tasks: JoinSet<()>,
}

impl Relay {
    /// Starts relaying new connections on a loopback port to `target`.
    pub async fn start(target: std::net::SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind relay");
        let addr = listener.local_addr().expect("relay address");
        let (frozen, frozen_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut pumps = JoinSet::new();
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                pumps.spawn(pump(client_read, server_write, frozen_rx.clone()));
                pumps.spawn(pump(server_read, client_write, frozen_rx.clone()));
            }
        });
        Relay {
            addr,
            frozen,
            _tasks: tasks,
        }
    }

    /// Stops (`true`) or resumes (`false`) forwarding on every connection, new ones included.
    pub fn freeze(&self, frozen: bool) {
        self.frozen.send_replace(frozen);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Bytes read just as the link froze are held until it thaws.
        if frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Where Kuma's documented example manifests are (`<kind>/<file>.yaml`): `ATOLL_CONFORMANCE_DIR`
/// when set, else `shared/conformance/kuma-docs` beside the checkout (how the project's machines
/// and CI lay it out). `None`, with a notice on stderr, when it is absent outside CI, so that a
/// lone clone's tests pass and say what they did not check; in CI (`CI` set) its absence is a
/// failure.
pub fn kuma_docs_corpus() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("ATOLL_CONFORMANCE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/kuma-docs")
        });
    if dir.is_dir() {
        return Some(dir);
    }
    let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty());
    assert!(
        !in_ci,
        "the conformance corpus is missing at {} (set ATOLL_CONFORMANCE_DIR)",
        dir.display()
    );
    eprintln!(
        "note: skipping the Kuma documentation corpus checks: {} is absent (set ATOLL_CONFORMANCE_DIR to Kuma's example manifests)",
        dir.display()
    );
    None
}

/// Rewrites the numbers and booleans written as values of `tags`/`labels` maps as the strings
/// Kuma (and Atoll) read them as (`port: 1800` reads back as `"1800"`): what a manifest should
/// read back as.
pub fn quote_tag_scalars(doc: &mut serde_json::Value) {
    use serde_json::Value;
    match doc {
        Value::Object(obj) => {
            for (key, child) in obj.iter_mut() {
                if matches!(key.as_str(), "tags" | "labels")
                    && let Value::Object(map) = child
                {
                    for value in map.values_mut() {
                        if let Value::Number(_) | Value::Bool(_) = value {
                            *value = Value::String(value.to_string());
                        }
                    }
                } else {
                    quote_tag_scalars(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(quote_tag_scalars),
        _ => {}
    }
}
