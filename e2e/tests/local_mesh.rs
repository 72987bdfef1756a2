//! The README's one command for a local multi-zone mesh (`deploy/local/run.sh`), run as an
//! operator would: it comes up, a request from zone-1 reaches the backend in zone-2, and Ctrl-C
//! stops every process it started, Envoys included.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use atoll_e2e::{envoy_available, through_mesh, workspace_binary};

/// Ports of this run are the script's defaults plus this offset, away from a mesh an operator
/// may run on the defaults and below the ephemeral range other tests pick from.
const PORT_OFFSET: u16 = 1000;

/// The script, interrupted (and its leftovers killed) when dropped.
struct LocalMesh {
    child: Child,
    data: PathBuf,
}

impl LocalMesh {
    fn interrupt(&mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        for _ in 0..300 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// Processes the script recorded that are still alive.
    fn survivors(&self) -> Vec<String> {
        let pids = std::fs::read_to_string(self.data.join("pids")).unwrap_or_default();
        let mut alive: Vec<String> = pids
            .lines()
            .filter(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
            })
            .map(str::to_string)
            .collect();
        // Envoys are atoll-dp's children: find anything still running from the data directory.
        let marker = self.data.display().to_string();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(&marker) {
                alive.push(format!("{} {cmdline}", entry.file_name().to_string_lossy()));
            }
        }
        alive
    }
}

impl Drop for LocalMesh {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.interrupt();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for line in self.survivors() {
            if let Some(pid) = line.split_whitespace().next() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_one_command_mesh_serves_cross_zone_traffic_and_stops_cleanly_on_ctrl_c() {
    if !envoy_available(
        "the_one_command_mesh_serves_cross_zone_traffic_and_stops_cleanly_on_ctrl_c",
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("mesh");
    let bin_dir = workspace_binary("atoll-zone-cp")
        .parent()
        .expect("binary directory")
        .to_path_buf();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local/run.sh");
    let mut child = Command::new("bash")
        .arg(&script)
        .env("ATOLL_BIN_DIR", &bin_dir)
        .env("ATOLL_LOCAL_DIR", &data)
        .env("ATOLL_LOCAL_PORT_OFFSET", PORT_OFFSET.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the script starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut mesh = LocalMesh { child, data };

    // Wait for the script to say the mesh is up, printing what it prints.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            eprintln!("| {line}");
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut printed = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while !printed.contains("Press Ctrl-C") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                printed.push_str(&line);
                printed.push('\n');
            }
            Err(_) => panic!("the local mesh did not come up within 180 s; printed:\n{printed}"),
        }
    }
    let outbound = 18090 + PORT_OFFSET;
    assert!(
        printed.contains(&format!("curl http://127.0.0.1:{outbound}/")),
        "the script must say how to send a cross-zone request:\n{printed}"
    );
    assert!(printed.contains("atollctl --api"), "{printed}");
    let body = through_mesh(outbound).await.expect("cross-zone request");
    assert!(body.contains("Hello from backend"), "{body}");
    assert!(body.contains("zone-2"), "{body}");

    let status = mesh
        .interrupt()
        .expect("the script stops within 30 s of Ctrl-C");
    assert_eq!(status.code(), Some(130), "Ctrl-C exit status");
    let survivors = mesh.survivors();
    assert!(
        survivors.is_empty(),
        "processes left behind: {survivors:#?}"
    );
}
