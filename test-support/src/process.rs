//! Control-plane binaries run as child processes, killed when the test ends (even on panic).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::free_port;

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
