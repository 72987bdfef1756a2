//! Test helpers: a small HTTPS bootstrap server (rcgen CA + tokio-rustls + hyper), fake Envoy
//! scripts, and guards that kill what a test started even when it fails.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};

/// The binary under test.
pub fn atoll_dp() -> &'static str {
    env!("CARGO_BIN_EXE_atoll-dp")
}

/// Polls `f` for at most `limit` (scaled by `ATOLL_TEST_PATIENCE`).
pub use atoll_test_support::until_blocking as wait_for;

/// True while a process exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

pub use atoll_test_support::free_port;

/// A CA and a server certificate for 127.0.0.1/localhost signed by it.
pub struct Pki {
    pub ca_pem: String,
    pub server_chain: Vec<CertificateDer<'static>>,
    pub server_key: Vec<u8>,
}

impl Pki {
    pub fn new() -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A name of its own, so that another test CA is an unknown issuer, not a bad signature.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ca_params.distinguished_name.push(
            DnType::CommonName,
            format!("atoll-dp test CA {}-{n}", std::process::id()),
        );
        let ca =
            CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
        let key = KeyPair::generate().expect("key");
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("params")
            .signed_by(&key, &ca)
            .expect("leaf");
        Pki {
            ca_pem: ca.pem(),
            server_chain: vec![leaf.der().clone()],
            server_key: key.serialize_der(),
        }
    }

    pub fn write_ca(&self, dir: &Path) -> PathBuf {
        let p = dir.join("ca.pem");
        std::fs::write(&p, &self.ca_pem).expect("write ca");
        p
    }
}

/// What the test server answers: status and JSON body for a request body.
pub type Answer = Arc<dyn Fn(&Value) -> (u16, Value) + Send + Sync>;

/// An HTTPS server answering `POST /bootstrap`, recording every request body.
pub struct TestCp {
    pub address: String,
    pub pki: Pki,
    pub requests: Arc<Mutex<Vec<Value>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestCp {
    pub fn start(answer: Answer) -> TestCp {
        let pki = Pki::new();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                pki.server_chain.clone(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server_key.clone())),
            )
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                loop {
                    let (tcp, _) = tokio::select! {
                        r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                        _ = &mut stop_rx => return,
                    };
                    let acceptor = acceptor.clone();
                    let answer = answer.clone();
                    let recorded = recorded.clone();
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let service = service_fn(move |req: Request<Incoming>| {
                            let answer = answer.clone();
                            let recorded = recorded.clone();
                            async move {
                                let path = req.uri().path().to_string();
                                let body = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let value: Value =
                                    serde_json::from_slice(&body).unwrap_or(Value::Null);
                                let (status, out) = if path == "/bootstrap" {
                                    recorded.lock().expect("lock").push(value.clone());
                                    answer(&value)
                                } else {
                                    (404, json!({"title": "Not Found", "details": path}))
                                };
                                let response = Response::builder()
                                    .status(StatusCode::from_u16(status).expect("status"))
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(out.to_string())))
                                    .expect("response");
                                Ok::<_, Infallible>(response)
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), service)
                            .await;
                    });
                }
            });
        });
        TestCp {
            address: format!("https://127.0.0.1:{}", addr.port()),
            pki,
            requests,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// A server answering every request with this bootstrap.
    pub fn serving(bootstrap: Value) -> TestCp {
        TestCp::start(Arc::new(move |_| {
            (200, json!({ "bootstrap": bootstrap.clone() }))
        }))
    }

    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().expect("lock").clone()
    }
}

impl Drop for TestCp {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub const DATAPLANE: &str = r#"
type: Dataplane
mesh: default
name: web-1
networking:
  address: 127.0.0.1
  inbound:
    - port: 18080
      servicePort: 18081
      tags:
        kuma.io/service: web
"#;

/// A test's files: dataplane, token, fake Envoy, and what the fake Envoy records.
pub struct Scene {
    pub dir: tempfile::TempDir,
    /// Unique to this test: the fake Envoy's process name is `fake-envoy-<tag>`.
    pub tag: String,
}

impl Scene {
    pub fn new() -> Scene {
        let dir = tempfile::tempdir().expect("tempdir");
        let tag = dir
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().trim_start_matches('.').to_string())
            .unwrap_or_default();
        let s = Scene { dir, tag };
        s.write("dp.yaml", DATAPLANE);
        s.write("token", "the-token\n");
        s
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    /// A fake Envoy: answers `--version`, appends `<pid> <args>` to `starts` on every start,
    /// then runs `then` (`sleep` keeps running as `fake-envoy-<tag>`; `exit 1` crashes).
    pub fn fake_envoy(&self, then: &str) -> PathBuf {
        let starts = self.path("starts");
        let p = self.write(
            "envoy",
            &format!(
                "#!/bin/bash\n\
                 if [ \"$1\" = \"--version\" ]; then echo 'envoy  version: 0000/1.40.0-fake/Clean/RELEASE/BoringSSL'; exit 0; fi\n\
                 echo \"$$ $*\" >> {starts}\n\
                 {then}\n",
                starts = starts.display()
            ),
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }

    /// The fake Envoy's body that stays up until signalled.
    pub fn sleeping(&self) -> String {
        format!("exec -a fake-envoy-{} sleep 120", self.tag)
    }

    /// `(pid, args)` of every fake Envoy start so far.
    pub fn starts(&self) -> Vec<(u32, String)> {
        std::fs::read_to_string(self.path("starts"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (pid, args) = l.split_once(' ')?;
                Some((pid.parse().ok()?, args.to_string()))
            })
            .collect()
    }

    /// Whether a recorded fake Envoy is still running (checked by its unique name).
    pub fn fake_alive(&self, pid: u32) -> bool {
        alive(pid)
            && std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.starts_with(format!("fake-envoy-{}", self.tag).as_bytes()))
    }

    /// `run` flags for this scene, against `cp`.
    pub fn args(&self, cp: &str) -> Vec<String> {
        vec![
            "run".into(),
            "--cp-address".into(),
            cp.into(),
            "--dataplane-file".into(),
            self.path("dp.yaml").display().to_string(),
            "--dataplane-token-file".into(),
            self.path("token").display().to_string(),
            "--envoy-binary".into(),
            self.path("envoy").display().to_string(),
            // The test CP's certificate is verified only where a test gives its CA
            // (`verified_args`).
            "--insecure-skip-verify".into(),
        ]
    }

    /// `args` for a control plane whose certificate is checked against `ca`.
    pub fn verified_args(&self, cp: &str, ca: &std::path::Path) -> Vec<String> {
        let mut args = self.args(cp);
        args.retain(|a| a != "--insecure-skip-verify");
        args.extend(["--ca-cert-file".into(), ca.display().to_string()]);
        args
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        for (pid, _) in self.starts() {
            if self.fake_alive(pid) {
                signal(pid, "KILL");
            }
        }
    }
}

/// A running atoll-dp; killed (SIGKILL) on drop. Its stderr goes to a file.
pub struct Dp {
    pub child: Child,
    stderr: PathBuf,
    status: Option<ExitStatus>,
}

impl Dp {
    pub fn start(args: &[String], stderr: PathBuf) -> Dp {
        let file = std::fs::File::create(&stderr).expect("stderr file");
        let child = Command::new(atoll_dp())
            .args(args)
            .env_remove("ATOLL_DP_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start atoll-dp");
        Dp {
            child,
            stderr,
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits at most `limit` for the exit.
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.status {
                return Some(s);
            }
            if let Ok(Some(s)) = self.child.try_wait() {
                self.status = Some(s);
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the exit and returns its code, failing the test with the log when it hangs.
    pub fn exit_code(&mut self, limit: Duration) -> i32 {
        match self.wait(limit) {
            Some(s) => s.code().unwrap_or(-1),
            None => panic!(
                "atoll-dp still running after {limit:?}; log:\n{}",
                self.stderr()
            ),
        }
    }
}

impl Drop for Dp {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
