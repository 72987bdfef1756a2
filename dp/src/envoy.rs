//! Running Envoy: the command line, `setpriv --pdeathsig SIGKILL` so the kernel kills Envoy when
//! atoll-dp dies (even by SIGKILL), restarts with capped exponential backoff, and a graceful stop
//! (SIGTERM, then SIGKILL after a grace period).
//!
//! The parent-death signal fires when the *thread* that forked the child ends, not the process:
//! Envoy must be spawned from a thread that lives as long as atoll-dp (the main thread; atoll-dp
//! runs a current-thread tokio runtime for that reason).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use atoll_backoff::Backoff;
use atoll_core::fnv::Fnv1a;
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// Looks a program up: a path with a `/` is taken as is, a bare name is searched in `PATH`.
pub fn resolve_program(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 || program.is_absolute() {
        return is_executable(program).then(|| program.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `setpriv` when it is installed and knows `--pdeathsig`.
pub fn find_setpriv() -> Option<PathBuf> {
    let setpriv = resolve_program(Path::new("setpriv"))?;
    let help = std::process::Command::new(&setpriv)
        .arg("--help")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&help.stdout)
        .contains("--pdeathsig")
        .then_some(setpriv)
}

/// Runs `envoy --version` (bounded to a few seconds) and returns the version number, e.g.
/// `1.40.0`, or the whole first line when it has no recognisable version field.
pub async fn envoy_version(envoy: &Path) -> Option<String> {
    let output = Command::new(envoy)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(5), output)
        .await
        .ok()?
        .ok()?;
    parse_version(&String::from_utf8_lossy(&output.stdout))
}

/// `envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL` → `1.40.0`.
pub fn parse_version(text: &str) -> Option<String> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let after = line.split_once("version:").map(|(_, v)| v.trim())?;
    let field = after
        .split('/')
        .nth(1)
        .filter(|v| v.chars().next().is_some_and(|c| c.is_ascii_digit()));
    Some(field.unwrap_or(after).to_string())
}

/// A stable `--base-id` for a proxy (FNV-1a of mesh and name, below 100000), so two proxies on
/// one host do not share Envoy's shared-memory names while one proxy keeps its id across restarts.
pub fn base_id(mesh: &str, name: &str) -> u32 {
    let mut hash = Fnv1a::new();
    hash.write_field(mesh.as_bytes());
    hash.write_field(name.as_bytes());
    // Below 100000, so it fits in a u32.
    (hash.finish() % 100_000) as u32
}

/// How Envoy is started.
#[derive(Debug, Clone)]
pub struct EnvoyCommand {
    pub envoy: PathBuf,
    pub args: Vec<OsString>,
    /// `setpriv` to start Envoy through, when available.
    pub setpriv: Option<PathBuf>,
}

impl EnvoyCommand {
    /// `<envoy> -c <bootstrap> --disable-hot-restart --base-id <id> --log-level <level>
    /// --drain-strategy immediate --drain-time-s 30 <extra>`.
    pub fn new(
        envoy: PathBuf,
        bootstrap: &Path,
        base_id: u32,
        log_level: &str,
        extra: &[String],
        setpriv: Option<PathBuf>,
    ) -> EnvoyCommand {
        let mut args: Vec<OsString> = vec![
            "-c".into(),
            bootstrap.as_os_str().to_owned(),
            "--disable-hot-restart".into(),
            "--base-id".into(),
            base_id.to_string().into(),
            "--log-level".into(),
            log_level.into(),
            // A listener update (a new MeshTrafficPermission, say) applies to connections that
            // were accepted under the old config only once they are drained. Draining them all
            // at once (HTTP: close after the current response) makes a Deny hold for the next
            // request, instead of the gradual default that lets pooled connections keep old
            // rules for seconds. Long-lived streams get Kuma's 30 s to finish.
            "--drain-strategy".into(),
            "immediate".into(),
            "--drain-time-s".into(),
            "30".into(),
        ];
        args.extend(extra.iter().map(OsString::from));
        EnvoyCommand {
            envoy,
            args,
            setpriv,
        }
    }

    /// The full command line, for logs.
    pub fn display(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if let Some(s) = &self.setpriv {
            parts.extend([
                s.display().to_string(),
                "--pdeathsig".into(),
                "SIGKILL".into(),
                "--".into(),
            ]);
        }
        parts.push(self.envoy.display().to_string());
        parts.extend(self.args.iter().map(|a| a.to_string_lossy().into_owned()));
        parts.join(" ")
    }

    fn spawn(&self) -> std::io::Result<Child> {
        let mut cmd = match &self.setpriv {
            Some(setpriv) => {
                let mut c = Command::new(setpriv);
                c.args(["--pdeathsig", "SIGKILL", "--"]).arg(&self.envoy);
                c
            }
            None => Command::new(&self.envoy),
        };
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            // Last resort if this future is dropped without a stop: never an orphan Envoy.
            .kill_on_drop(true);
        cmd.spawn()
    }
}

/// Restart delays: `initial`, doubled after each exit up to `max`; back to `initial` once Envoy
/// ran at least `reset_after`.
#[derive(Debug, Clone, Copy)]
pub struct RestartPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub reset_after: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(60),
        }
    }
}

impl RestartPolicy {
    /// The delays of one supervision, starting from `initial`.
    pub fn delays(&self) -> RestartDelays {
        RestartDelays {
            backoff: Backoff::new(self.initial, self.max),
            reset_after: self.reset_after,
        }
    }
}

/// The restart delays of one supervised Envoy.
#[derive(Debug, Clone)]
pub struct RestartDelays {
    backoff: Backoff,
    reset_after: Duration,
}

impl RestartDelays {
    /// The delay before the next start, given how long the run that just ended lasted.
    pub fn after_exit(&mut self, ran: Duration) -> Duration {
        if ran >= self.reset_after {
            self.backoff.reset();
        }
        self.backoff.next_delay()
    }
}

/// Describes an exit status for logs: `exit code 1`, `killed by signal 9`.
pub fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => status.to_string(),
    }
}

/// Starts Envoy and keeps it running until `shutdown` turns true, then stops it: SIGTERM, and
/// SIGKILL if it is still there after `grace`. Returns once Envoy is gone.
pub async fn supervise(
    command: &EnvoyCommand,
    policy: RestartPolicy,
    grace: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut delays = policy.delays();
    let mut starts = 0u64;
    loop {
        if *shutdown.borrow() {
            return;
        }
        starts += 1;
        let started = Instant::now();
        let outcome = match command.spawn() {
            Ok(mut child) => {
                let pid = child.id().unwrap_or_default();
                tracing::info!(pid, start = starts, "Envoy started: {}", command.display());
                tokio::select! {
                    status = child.wait() => match status {
                        Ok(s) => format!("Envoy (pid {pid}) exited: {}", describe(s)),
                        Err(e) => format!("cannot wait for Envoy (pid {pid}): {e}"),
                    },
                    () = stopped(&mut shutdown) => {
                        stop(&mut child, pid, grace).await;
                        return;
                    }
                }
            }
            Err(e) => format!("cannot start Envoy ({}): {e}", command.display()),
        };
        let ran = started.elapsed();
        let wait = delays.after_exit(ran);
        tracing::warn!(
            "{outcome} after {:.1}s; restarting in {:.0}s",
            ran.as_secs_f64(),
            wait.as_secs_f64()
        );
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            () = stopped(&mut shutdown) => return,
        }
    }
}

/// Resolves once the flag is true; never, if its sender is gone without setting it.
pub async fn stopped(flag: &mut watch::Receiver<bool>) {
    if flag.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// SIGTERM, wait up to `grace`, then SIGKILL; always reaps the child.
async fn stop(child: &mut Child, pid: u32, grace: Duration) {
    tracing::info!(
        pid,
        "stopping Envoy (SIGTERM, {:.0}s grace)",
        grace.as_secs_f64()
    );
    // The child is not reaped before `wait` returns, so its pid cannot have been reused.
    let term = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    if !term.is_ok_and(|s| s.success()) {
        tracing::warn!(pid, "could not send SIGTERM to Envoy; killing it");
        let _ = child.start_kill();
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(Ok(s)) => tracing::info!(pid, "Envoy stopped: {}", describe(s)),
        Ok(Err(e)) => tracing::warn!(pid, "cannot wait for Envoy: {e}"),
        Err(_) => {
            tracing::warn!(pid, "Envoy still running after {grace:?}; sending SIGKILL");
            let _ = child.start_kill();
            match child.wait().await {
                Ok(s) => tracing::info!(pid, "Envoy stopped: {}", describe(s)),
                Err(e) => tracing::warn!(pid, "cannot wait for Envoy: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }

    fn lines(p: &Path) -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn pid_alive(pid: &str) -> bool {
        // A zombie still has /proc/<pid>; look at its state.
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    }

    #[test]
    fn restart_delays_double_cap_and_reset() {
        let mut delays = RestartPolicy::default().delays();
        let short = Duration::from_secs(1);
        let seen: Vec<u64> = (0..7).map(|_| delays.after_exit(short).as_secs()).collect();
        assert_eq!(seen, vec![1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(
            delays.after_exit(Duration::from_secs(61)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn base_ids_are_stable_and_distinct() {
        assert_eq!(base_id("default", "web-1"), base_id("default", "web-1"));
        assert_ne!(base_id("default", "web-1"), base_id("default", "web-2"));
        assert_ne!(base_id("a", "b/c"), base_id("a/b", "c"));
        assert!(base_id("x", "y") < 100_000);
    }

    #[test]
    fn versions_are_parsed() {
        assert_eq!(
            parse_version("\nenvoy  version: 7b8baff/1.40.0/Clean/RELEASE/BoringSSL\n").as_deref(),
            Some("1.40.0")
        );
        assert_eq!(parse_version("envoy version: dev").as_deref(), Some("dev"));
        assert_eq!(parse_version("nothing"), None);
    }

    #[test]
    fn command_line() {
        let c = EnvoyCommand::new(
            "/bin/envoy".into(),
            Path::new("/w/b.json"),
            42,
            "info",
            &["--concurrency".into(), "2".into()],
            Some("/usr/bin/setpriv".into()),
        );
        assert_eq!(
            c.display(),
            "/usr/bin/setpriv --pdeathsig SIGKILL -- /bin/envoy -c /w/b.json --disable-hot-restart --base-id 42 --log-level info --drain-strategy immediate --drain-time-s 30 --concurrency 2"
        );
    }

    #[tokio::test]
    async fn a_crashing_envoy_is_restarted_until_shutdown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let starts = dir.path().join("starts");
        let fake = script(
            dir.path(),
            "envoy",
            &format!("echo start >> {}\nexit 3", starts.display()),
        );
        let cmd = EnvoyCommand::new(fake, Path::new("b.json"), 1, "info", &[], find_setpriv());
        let policy = RestartPolicy {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(50),
            reset_after: Duration::from_secs(60),
        };
        let (tx, rx) = watch::channel(false);
        let run =
            tokio::spawn(async move { supervise(&cmd, policy, Duration::from_secs(1), rx).await });
        wait_until("three starts", || lines(&starts).len() >= 3).await;
        tx.send(true).expect("send");
        tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .expect("supervise returns")
            .expect("no panic");
    }

    #[tokio::test]
    async fn an_envoy_ignoring_sigterm_is_killed_after_the_grace_period() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("pid");
        let fake = script(
            dir.path(),
            "envoy",
            &format!(
                "trap '' TERM\necho $$ > {}\nexec sleep 30",
                pid_file.display()
            ),
        );
        let cmd = EnvoyCommand::new(fake, Path::new("b.json"), 1, "info", &[], find_setpriv());
        let (tx, rx) = watch::channel(false);
        let run = tokio::spawn(async move {
            supervise(
                &cmd,
                RestartPolicy::default(),
                Duration::from_millis(300),
                rx,
            )
            .await
        });
        wait_until("the fake envoy", || !lines(&pid_file).is_empty()).await;
        let pid = lines(&pid_file)[0].clone();
        assert!(pid_alive(&pid));
        let asked = Instant::now();
        tx.send(true).expect("send");
        tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .expect("supervise returns")
            .expect("no panic");
        assert!(
            asked.elapsed() >= Duration::from_millis(300),
            "waited the grace period"
        );
        assert!(!pid_alive(&pid), "the fake envoy is gone");
    }
}
