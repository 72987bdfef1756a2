//! atollctl against a live control plane started in-process on real sockets (127.0.0.1, ports
//! chosen at run time), on SQLite and on PostgreSQL.

use std::path::Path;
use std::process::Output;

use atoll_cp::{Config, ConfigArgs, ControlPlane, Mode};
use tokio::net::TcpListener;

const MESH: &str = "type: Mesh\nname: m\n";
const TIMEOUT: &str = "type: MeshTimeout\nname: n\nmesh: m\nspec:\n  targetRef:\n    kind: Mesh\n  to:\n  - targetRef:\n      kind: Mesh\n    default:\n      idleTimeout: 20s\n      connectionTimeout: 2s\n      http:\n        requestTimeout: 2s\n";

async fn start(data_dir: &Path, store: &str) -> ControlPlane {
    let args = ConfigArgs {
        data_dir: Some(data_dir.to_path_buf()),
        store: Some(store.to_string()),
        ..Default::default()
    };
    let config = Config::resolve(Mode::Global, &args).expect("config");
    let api = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let diag = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    ControlPlane::start(config, api, diag)
        .await
        .expect("control plane starts")
}

/// Runs atollctl with `stdin` piped in, off the async runtime.
async fn ctl(cp: &ControlPlane, args: &[&str], stdin: Option<&str>) -> Output {
    let api = format!("http://{}", cp.api_address);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let stdin = stdin.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new(env!("CARGO_BIN_EXE_atollctl"))
            .args(&args)
            .env("ATOLL_API", api)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("atollctl runs");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        }
        drop(child.stdin.take());
        child.wait_with_output().expect("atollctl exits")
    })
    .await
    .expect("join")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn get_json(cp: &ControlPlane, path: &str) -> (u16, serde_json::Value) {
    let resp = reqwest::get(format!("http://{}{path}", cp.api_address))
        .await
        .expect("GET");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

/// The acceptance path on one store URL: apply, read back three ways, survive a restart,
/// refuse bad input while storing nothing.
async fn acceptance(store: &str, data_dir: &Path) {
    let cp = start(data_dir, store).await;

    let out = ctl(
        &cp,
        &["apply", "-f", "-"],
        Some(&format!("{MESH}---\n{TIMEOUT}")),
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("created"), "{}", text(&out));

    let out = ctl(
        &cp,
        &["get", "meshtimeout", "n", "-m", "m", "-o", "yaml"],
        None,
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let yaml = String::from_utf8_lossy(&out.stdout).to_string();
    let doc = atoll_core::format::parse_document(&yaml).expect("atollctl prints valid YAML");
    assert_eq!(doc["name"], "n", "{yaml}");
    assert_eq!(
        doc["spec"]["to"][0]["default"]["http"]["requestTimeout"], "2s",
        "{yaml}"
    );
    assert_eq!(doc["version"], 1, "{yaml}");

    let (status, body) = get_json(&cp, "/meshes/m/meshtimeouts/n").await;
    assert_eq!(status, 200);
    assert_eq!(body["spec"]["to"][0]["default"]["idleTimeout"], "20s");

    let out = ctl(&cp, &["get", "meshtimeouts", "-m", "m"], None).await;
    let table = text(&out);
    assert!(
        table
            .lines()
            .next()
            .is_some_and(|h| h.contains("NAME") && h.contains("TARGETREF KIND")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("m ") && l.contains(" n ")),
        "{table}"
    );

    // A Kuma documentation manifest applies as-is (after its mesh exists).
    let out = ctl(
        &cp,
        &["apply", "-f", "-"],
        Some("type: Mesh\nname: default\n"),
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    if let Some(corpus) = atoll_test_support::kuma_docs_corpus() {
        let doc = corpus
            .join("MeshTimeout")
            .read_dir()
            .expect("corpus")
            .flatten()
            .next()
            .expect("a file")
            .path();
        let out = ctl(&cp, &["apply", "-f", doc.to_str().expect("utf8")], None).await;
        assert!(out.status.success(), "{}: {}", doc.display(), text(&out));
    }

    // Bad input: non-zero exit, a message naming the field or kind, nothing stored.
    let bad_duration = TIMEOUT
        .replace("idleTimeout: 20s", "idleTimeout: 20 seconds")
        .replace("name: n", "name: bad");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "invalid duration",
            bad_duration,
            "spec.to[0].default.idleTimeout",
        ),
        (
            "broken YAML",
            "type: Mesh\nname: [oops\n".into(),
            "invalid YAML",
        ),
        (
            "unknown kind",
            "type: MeshTimout\nname: bad\nmesh: m\n".into(),
            "MeshTimout",
        ),
        (
            "missing mesh",
            TIMEOUT
                .replace("mesh: m", "mesh: nope")
                .replace("name: n", "name: bad"),
            "nope",
        ),
    ];
    for (what, doc, needle) in cases {
        let out = ctl(&cp, &["apply", "-f", "-"], Some(&doc)).await;
        assert!(
            !out.status.success(),
            "{what}: expected failure, got {}",
            text(&out)
        );
        assert!(
            text(&out).contains(needle),
            "{what}: {} does not mention {needle}",
            text(&out)
        );
    }
    for path in [
        "/meshes/m/meshtimeouts/bad",
        "/meshes/nope/meshtimeouts/bad",
    ] {
        let (status, _) = get_json(&cp, path).await;
        assert_eq!(status, 404, "{path} must not exist");
    }

    // A multi-document file with one bad document applies nothing.
    let mixed = format!(
        "type: Mesh\nname: other\n---\n{}",
        TIMEOUT.replace("2s\n      http", "bogus\n      http")
    );
    let out = ctl(&cp, &["apply", "-f", "-"], Some(&mixed)).await;
    assert!(!out.status.success());
    assert!(text(&out).contains("Nothing was applied"), "{}", text(&out));
    assert_eq!(get_json(&cp, "/meshes/other").await.0, 404);

    // Restart on the same store: everything is still there.
    cp.stop().await;
    let cp = start(data_dir, store).await;
    let (status, body) = get_json(&cp, "/meshes/m/meshtimeouts/n").await;
    assert_eq!(status, 200, "lost across restart: {body}");
    assert_eq!(
        body["spec"]["to"][0]["default"]["http"]["requestTimeout"],
        "2s"
    );

    let out = ctl(&cp, &["delete", "meshtimeout", "n", "-m", "m"], None).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(get_json(&cp, "/meshes/m/meshtimeouts/n").await.0, 404);
    let out = ctl(&cp, &["delete", "meshtimeout", "n", "-m", "m"], None).await;
    assert!(!out.status.success());
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acceptance_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    acceptance("sqlite://", dir.path()).await;
    assert!(
        dir.path().join("atoll.db").exists(),
        "the default store is a file in the data dir"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acceptance_on_postgres() {
    atoll_store::conformance::with_postgres_database("ctl_acceptance", |url| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        acceptance(&url, dir.path()).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_control_plane_is_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_atollctl"))
            .args(["get", "meshes"])
            .env("ATOLL_API", format!("http://{addr}"))
            .output()
            .expect("runs")
    })
    .await
    .expect("join");
    assert!(!out.status.success());
    assert!(
        text(&out).contains("cannot reach the control plane"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_valid_prometheus_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cp = start(dir.path(), "memory").await;
    let _ = get_json(&cp, "/meshes").await;
    let body = reqwest::get(format!("http://{}/metrics", cp.diagnostics_address))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("text");
    assert!(body.contains("atoll_api_requests_total"), "{body}");
    assert!(
        body.contains("atoll_store_operation_duration_seconds_bucket"),
        "{body}"
    );
    check_exposition_format(&body);
    let ready = reqwest::get(format!("http://{}/ready", cp.diagnostics_address))
        .await
        .expect("ready");
    assert_eq!(ready.status().as_u16(), 200);
    cp.stop().await;
}

/// Checks the Prometheus text format line by line: `# HELP`/`# TYPE` comments, and samples of the
/// form `name{label="value",...} number`.
fn check_exposition_format(body: &str) {
    let is_name = |s: &str| {
        !s.is_empty()
            && s.chars().enumerate().all(|(i, c)| {
                c == '_' || c == ':' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())
            })
    };
    for line in body.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let keyword = parts.next().unwrap_or("");
            assert!(
                keyword == "HELP" || keyword == "TYPE",
                "bad comment: {line}"
            );
            assert!(
                is_name(parts.next().unwrap_or("")),
                "bad metric name: {line}"
            );
            if keyword == "TYPE" {
                let t = parts.next().unwrap_or("");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                    "bad type: {line}"
                );
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "bad value: {line}"
        );
        let name = series.split('{').next().unwrap_or("");
        assert!(is_name(name), "bad sample name: {line}");
        if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
            assert!(
                labels.starts_with('{') && labels.ends_with('}'),
                "bad labels: {line}"
            );
            for pair in labels[1..labels.len() - 1]
                .split("\",")
                .filter(|p| !p.is_empty())
            {
                let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                assert!(is_name(k), "bad label name in {line}");
                let _ = v;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zones_and_their_dataplanes_on_global() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cp = start(dir.path(), "memory").await;
    let docs = "type: Zone\nname: east\n---\ntype: Zone\nname: west\nenabled: false\n---\ntype: Mesh\nname: default\n---\ntype: Dataplane\nmesh: default\nname: web-1-xyz\nlabels:\n  kuma.io/origin: zone\n  kuma.io/zone: east\n  kuma.io/display-name: web-1\nnetworking:\n  address: 10.0.0.1\n  inbound:\n  - port: 8080\n    tags:\n      kuma.io/service: web\n";
    let out = ctl(&cp, &["apply", "-f", "-"], Some(docs)).await;
    assert!(out.status.success(), "{}", text(&out));

    // Without a KDS server (this global runs none) every zone is offline and never seen.
    let out = ctl(&cp, &["get", "zones"], None).await;
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| {
            l.split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(
        lines,
        [
            vec![
                "NAME",
                "STATUS",
                "CONNECTED",
                "LAST SEEN",
                "ZONE CP VERSION",
                "ENABLED"
            ],
            vec!["east", "Offline", "-", "never", "-", "true"],
            vec!["west", "Offline", "-", "never", "-", "false"],
        ],
        "{table}"
    );
    let out = ctl(&cp, &["get", "zones", "-o", "json"], None).await;
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["total"], 2);
    assert_eq!(doc["items"][0]["type"], "ZoneOverview");
    assert_eq!(doc["items"][1]["zone"]["enabled"], false);
    let out = ctl(&cp, &["get", "zone", "west", "-o", "yaml"], None).await;
    let yaml = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        yaml.contains("type: ZoneOverview") && yaml.contains("name: west"),
        "{yaml}"
    );

    // The dataplane table names each dataplane's zone.
    let out = ctl(&cp, &["get", "dataplanes"], None).await;
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        table.lines().next().unwrap_or_default().contains("ZONE"),
        "{table}"
    );
    // ... and shows it under the name its zone knows it by, which `get` also finds.
    assert!(table.contains("web-1   east"), "{table}");
    let out = ctl(&cp, &["get", "dataplane", "web-1", "-o", "json"], None).await;
    assert!(out.status.success(), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["name"], "web-1-xyz");
    let out = ctl(&cp, &["get", "dataplane", "api-1"], None).await;
    assert!(!out.status.success());
    assert!(text(&out).contains("not found"), "{}", text(&out));

    let out = ctl(&cp, &["delete", "zone", "west"], None).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = ctl(&cp, &["get", "zone", "west"], None).await;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("zone \"west\" not found"),
        "{}",
        text(&out)
    );
    cp.stop().await;
}

/// Runs atollctl with `env` (and nothing of the test's own ATOLL_* settings), off the runtime.
async fn ctl_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_atollctl"));
        cmd.args(&args);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("ATOLL_")) {
            cmd.env_remove(k);
        }
        cmd.envs(env).output().expect("atollctl runs")
    })
    .await
    .expect("join")
}

/// The API over HTTPS with a generated certificate: atollctl verifies it (refusing it without
/// the CA unless told to skip verification), and user tokens minted through it authenticate,
/// are limited by their groups and stop working once revoked. Loopback is not admin here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_api_is_verified_and_user_tokens_work_end_to_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = ConfigArgs {
        data_dir: Some(dir.path().to_path_buf()),
        store: Some("memory".into()),
        api_loopback_admin: Some(false),
        ..Default::default()
    };
    let config = Config::resolve(Mode::Global, &args).expect("config");
    let listeners = atoll_cp::Listeners {
        api: TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        api_https: Some(TcpListener::bind("127.0.0.1:0").await.expect("bind")),
        diagnostics: TcpListener::bind("127.0.0.1:0").await.expect("bind"),
    };
    let cp = ControlPlane::start_listeners(config, listeners, None)
        .await
        .expect("control plane starts");
    let https = format!(
        "https://127.0.0.1:{}",
        cp.api_https_address.expect("https served").port()
    );
    let ca = dir.path().join("api-tls/ca.pem");
    let ca = ca.to_str().expect("utf-8 path");
    let admin_token = std::fs::read_to_string(dir.path().join("admin-token")).expect("token");
    let admin_token = admin_token.trim();

    // Without the CA (the system's bundle does not hold it) nothing is sent.
    let out = ctl_with(&["--api", &https, "get", "meshes"], &[]).await;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("could not be verified") && text(&out).contains("--ca-cert-file"),
        "{}",
        text(&out)
    );
    // Another control plane's CA is no better.
    let other = tempfile::tempdir().expect("tempdir");
    atoll_cp::server_tls::load_or_generate(&atoll_cp::server_tls::ServerTlsSource {
        server: "API",
        setting_prefix: "ATOLL_API_TLS",
        cert_file: None,
        key_file: None,
        dir: other.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        trust_hint: "",
    })
    .expect("generated");
    let other_ca = other.path().join("ca.pem");
    let other_ca = other_ca.to_str().expect("utf-8 path");
    let out = ctl_with(
        &["--api", &https, "--ca-cert-file", other_ca, "get", "meshes"],
        &[],
    )
    .await;
    assert!(
        text(&out).contains("could not be verified"),
        "{}",
        text(&out)
    );
    let out = ctl_with(
        &["--api", &https, "--insecure-skip-verify", "get", "meshes"],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("NOT verified"), "{}", text(&out));

    // Loopback is not admin: anonymous writes are refused, the admin token's are not.
    let verified = [("ATOLL_API", https.as_str()), ("ATOLL_API_CA_FILE", ca)];
    let admin = [
        ("ATOLL_API", https.as_str()),
        ("ATOLL_API_CA_FILE", ca),
        ("ATOLL_API_TOKEN", admin_token),
    ];
    let mesh_file = dir.path().join("mesh.yaml");
    std::fs::write(&mesh_file, MESH).expect("write");
    let mesh_path = mesh_file.to_str().expect("utf-8 path");
    let out = ctl_with(&["apply", "-f", mesh_path], &verified).await;
    assert!(
        !out.status.success() && text(&out).contains("mesh-system:anonymous"),
        "{}",
        text(&out)
    );
    let out = ctl_with(&["apply", "-f", mesh_path], &admin).await;
    assert!(out.status.success(), "{}", text(&out));

    let out = ctl_with(
        &[
            "generate",
            "user-token",
            "--name",
            "alice",
            "--group",
            "team-a",
            "--valid-for",
            "1h",
        ],
        &admin,
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let alice = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let as_alice = [
        ("ATOLL_API", https.as_str()),
        ("ATOLL_API_CA_FILE", ca),
        ("ATOLL_API_TOKEN", alice.as_str()),
    ];
    let out = ctl_with(&["get", "meshes"], &as_alice).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains('m'), "{}", text(&out));
    let out = ctl_with(&["delete", "mesh", "m"], &as_alice).await;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("\"alice\"")
            && text(&out).contains("team-a")
            && text(&out).contains("write Mesh"),
        "{}",
        text(&out)
    );
    let out = ctl_with(
        &[
            "generate",
            "user-token",
            "--name",
            "eve",
            "--group",
            "mesh-system:admin",
        ],
        &as_alice,
    )
    .await;
    assert!(!out.status.success(), "{}", text(&out));

    let token_file = dir.path().join("alice.token");
    std::fs::write(&token_file, &alice).expect("write");
    let out = ctl_with(
        &[
            "revoke",
            "user-token",
            "--token-file",
            token_file.to_str().expect("utf-8"),
        ],
        &admin,
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let out = ctl_with(&["get", "meshes"], &as_alice).await;
    assert!(
        !out.status.success() && text(&out).contains("revoked"),
        "{}",
        text(&out)
    );
    cp.stop().await;
}
