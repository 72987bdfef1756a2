//! `atollctl` against a real zone control plane: the dataplane token it generates is a JWT the
//! control plane accepts for that dataplane (atoll-dp and Envoy connect with it), `get
//! dataplanes` shows the live status columns, `inspect` prints JSON, and mistakes exit non-zero
//! with a message that says what is wrong.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use atoll_e2e::{DpProcess, envoy_available, http_backend, workspace_binary};
use atoll_test_support::{CpProcess, free_port};

/// What one `atollctl` run printed.
#[derive(Debug)]
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `atollctl ARGS` against `api` (through `ATOLL_API`), killing it after 20 s.
fn atollctl(api: &str, args: &[&str]) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = Command::new(workspace_binary("atollctl"))
        .args(args)
        .env_clear()
        .env("ATOLL_API", api)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("atollctl starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("atollctl {args:?} did not finish within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        success: status.success(),
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

fn b64url_json(segment: &str) -> Value {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .unwrap_or_else(|e| panic!("segment {segment:?} is not base64url: {e}"));
    serde_json::from_slice(&bytes).expect("segment is JSON")
}

fn dataplane(name: &str, inbound: u16, app: u16) -> String {
    format!(
        "type: Dataplane\nmesh: default\nname: {name}\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: {inbound}\n    servicePort: {app}\n    tags:\n      kuma.io/service: web\n      kuma.io/protocol: http\n"
    )
}

fn dp(dir: &Path, xds_port: u16, ca: &Path, name: &str, token: &str, app: u16) -> DpProcess {
    let dp_file = dir.join(format!("{name}.yaml"));
    std::fs::write(&dp_file, dataplane(name, free_port(), app)).expect("write dataplane");
    let token_file = dir.join(format!("{name}.token"));
    std::fs::write(&token_file, token).expect("write token");
    let args: Vec<String> = vec![
        "--cp-address".into(),
        format!("https://127.0.0.1:{xds_port}"),
        "--dataplane-file".into(),
        dp_file.display().to_string(),
        "--dataplane-token-file".into(),
        token_file.display().to_string(),
        "--ca-cert-file".into(),
        ca.display().to_string(),
        "--admin-port".into(),
        free_port().to_string(),
        "--cp-connect-timeout".into(),
        "10s".into(),
        "--envoy-log-level".into(),
        "warning".into(),
    ];
    DpProcess::spawn(&args, name, &dir.join(format!("{name}.log")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atollctl_tokens_status_inspection_and_errors() {
    if !envoy_available("atollctl_tokens_status_inspection_and_errors") {
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
    let api = cp.api.clone();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let resp = http
        .put(format!("{api}/meshes/default"))
        .json(
            &json!({"type": "Mesh", "name": "default", "mtls": {"enabledBackend": "ca-1",
            "backends": [{"name": "ca-1", "type": "builtin"}]}}),
        )
        .send()
        .await
        .expect("PUT mesh");
    assert!(resp.status().is_success(), "{}", resp.status());

    // The token: one line, a JWT (three base64url segments) naming web-1 in mesh default,
    // bound to its service; the real proxy comes online with it below.
    let run = atollctl(
        &api,
        &[
            "generate",
            "dataplane-token",
            "--mesh",
            "default",
            "--name",
            "web-1",
            "--valid-for",
            "1h",
            "--tag",
            "kuma.io/service=web",
        ],
    );
    assert!(run.success, "{run:?}");
    let token = run.stdout.trim().to_string();
    assert_eq!(run.stdout.lines().count(), 1, "{run:?}");
    let segments: Vec<&str> = token.split('.').collect();
    assert_eq!(segments.len(), 3, "not a JWT: {token}");
    for s in &segments {
        assert!(
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "segment {s:?} is not base64url"
        );
    }
    let header = b64url_json(segments[0]);
    assert!(header["alg"].is_string(), "{header}");
    let claims = b64url_json(segments[1]);
    assert_eq!(claims["name"], "web-1", "{claims}");
    assert_eq!(claims["mesh"], "default", "{claims}");
    assert_eq!(
        claims["tags"]["kuma.io/service"],
        serde_json::json!(["web"]),
        "--tag binds the service: {claims}"
    );
    let lifetime = claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0);
    assert_eq!(lifetime, 3600, "--valid-for 1h: {claims}");

    // The control plane accepts it for web-1: atoll-dp registers and Envoy connects (online).
    let ca = data.join("xds-tls").join("ca.pem");
    let app = http_backend("web-ok").await;
    let _web = dp(dir.path(), xds_port, &ca, "web-1", &token, app.port());
    let started = Instant::now();
    let mut online = false;
    while started.elapsed() < Duration::from_secs(30) && !online {
        let overview: Value = match http
            .get(format!("{api}/meshes/default/dataplanes/_overview"))
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        online = overview["items"].as_array().is_some_and(|items| {
            items
                .iter()
                .any(|i| i["name"] == "web-1" && i["status"]["online"] == true)
        });
        if !online {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(
        online,
        "web-1 never came online with the atollctl token; log:\n{}",
        std::fs::read_to_string(dir.path().join("web-1.log")).unwrap_or_default()
    );
    // ... and only for web-1.
    let mut other = dp(dir.path(), xds_port, &ca, "web-2", &token, app.port());
    assert_eq!(
        other.wait_exit(Duration::from_secs(20)),
        Some(false),
        "web-1's token must not admit web-2"
    );

    // `inspect dataplane --type rules` prints JSON.
    let run = atollctl(
        &api,
        &[
            "inspect",
            "dataplane",
            "web-1",
            "-m",
            "default",
            "--type",
            "rules",
        ],
    );
    assert!(run.success, "{run:?}");
    let rules: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", run.stdout));
    assert_eq!(rules["inbounds"][0]["service"], "web", "{rules}");

    // Mistakes exit non-zero and say what is wrong.
    let run = atollctl(
        &api,
        &[
            "inspect",
            "dataplane",
            "nope",
            "-m",
            "default",
            "--type",
            "rules",
        ],
    );
    assert!(!run.success, "{run:?}");
    assert!(
        run.stderr.contains("\"nope\"") && run.stderr.contains("404"),
        "{run:?}"
    );
    assert!(run.stdout.is_empty(), "{run:?}");

    let run = atollctl(&api, &["inspect", "dataplane", "web-1", "-m", "missing"]);
    assert!(!run.success, "{run:?}");
    assert!(run.stderr.contains("\"missing\""), "{run:?}");

    let run = atollctl(
        &api,
        &[
            "generate",
            "dataplane-token",
            "--mesh",
            "missing",
            "--name",
            "x",
        ],
    );
    assert!(!run.success, "{run:?}");
    assert!(
        run.stderr.contains("mesh \"missing\" does not exist"),
        "{run:?}"
    );
    assert!(run.stdout.is_empty(), "no token printed: {run:?}");

    let run = atollctl(
        &api,
        &[
            "generate",
            "dataplane-token",
            "--name",
            "web-1",
            "--valid-for",
            "forever",
        ],
    );
    assert!(!run.success, "{run:?}");
    assert!(run.stderr.contains("validFor"), "{run:?}");

    let unreachable = format!("http://127.0.0.1:{}", free_port());
    let run = atollctl(&unreachable, &["get", "dataplanes"]);
    assert!(!run.success, "{run:?}");
    assert!(
        run.stderr.contains("cannot reach the control plane"),
        "{run:?}"
    );

    // `get dataplanes` shows the live status and certificate expiry.
    let run = atollctl(&api, &["get", "dataplanes"]);
    assert!(run.success, "{run:?}");
    let header = run.stdout.lines().next().unwrap_or_default();
    assert!(header.contains("NAME"), "{}", run.stdout);
    assert!(
        header.contains("STATUS"),
        "no STATUS column:\n{}",
        run.stdout
    );
    assert!(
        header.contains("CERT EXPIRY"),
        "no CERT EXPIRY column:\n{}",
        run.stdout
    );
    let row = run
        .stdout
        .lines()
        .find(|l| l.contains("web-1"))
        .unwrap_or_else(|| panic!("no web-1 row:\n{}", run.stdout));
    assert!(row.contains("Online"), "web-1 is not shown online: {row}");
}

/// `atollctl generate tls-certificate` writes a server certificate with its CA behind it, a
/// private key only its owner reads, and the CA clients trust; bad input is refused with the
/// flag named and nothing written.
#[test]
fn atollctl_generates_tls_certificates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name);
    let arg = |name: &str| path(name).to_str().expect("utf8").to_string();
    let (cert, key, ca) = (arg("cert.pem"), arg("key.pem"), arg("ca.pem"));
    let run = atollctl(
        "http://127.0.0.1:9",
        &[
            "generate",
            "tls-certificate",
            "--type",
            "server",
            "--hostname",
            "127.0.0.1",
            "--hostname",
            "cp.example",
            "--cert-file",
            &cert,
            "--key-file",
            &key,
            "--ca-cert-file",
            &ca,
        ],
    );
    assert!(run.success, "{run:?}");
    let chain = std::fs::read_to_string(path("cert.pem")).expect("cert written");
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2, "{chain}");
    let ca_pem = std::fs::read_to_string(path("ca.pem")).expect("ca written");
    assert!(
        chain.ends_with(&ca_pem),
        "the chain ends with the CA clients trust"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path("key.pem"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let bad = arg("bad.pem");
    let run = atollctl(
        "http://127.0.0.1:9",
        &[
            "generate",
            "tls-certificate",
            "--type",
            "server",
            "--hostname",
            "127.0.0.1",
            "--cert-file",
            &bad,
            "--key-file",
            &bad,
            "--valid-for",
            "forever",
        ],
    );
    assert!(!run.success, "{run:?}");
    assert!(run.stderr.contains("--valid-for"), "{run:?}");
    assert!(!path("bad.pem").exists(), "nothing written");
}
