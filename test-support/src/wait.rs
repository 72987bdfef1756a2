//! Bounded waits. Every helper here polls a condition until it holds or its patience runs out;
//! the patience is multiplied by `ATOLL_TEST_PATIENCE` (a number, default 1), so a slow or
//! crowded machine can give every wait more time without touching a test.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// The variable that scales every wait.
pub const PATIENCE_VAR: &str = "ATOLL_TEST_PATIENCE";

/// How long a test waits for something that should happen promptly, before scaling.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// How often conditions are polled.
const POLL: Duration = Duration::from_millis(50);

/// `ATOLL_TEST_PATIENCE`, or 1 when unset; a value that is not a positive number is a mistake
/// worth stopping for.
pub fn patience_factor() -> f64 {
    match std::env::var(PATIENCE_VAR) {
        Err(_) => 1.0,
        Ok(v) => match v.trim().parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 => f,
            _ => panic!("{PATIENCE_VAR} must be a positive number such as 2 (got {v:?})"),
        },
    }
}

/// `base` scaled by `ATOLL_TEST_PATIENCE`.
pub fn scaled(base: Duration) -> Duration {
    base.mul_f64(patience_factor())
}

/// Polls `check` until it answers `Some`, for at most `patience` (scaled); panics naming `what`
/// when it never does.
pub async fn eventually<T, F, Fut>(what: &str, patience: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let patience = scaled(patience);
    let deadline = Instant::now() + patience;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {patience:?} waiting for: {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `check` until it holds, for at most `patience` (scaled): how long that took, or `None`
/// if it never held (for tests that explain the failure themselves).
pub async fn until<F, Fut>(patience: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let patience = scaled(patience);
    let started = Instant::now();
    loop {
        if check().await {
            return Some(started.elapsed());
        }
        if started.elapsed() >= patience {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Like [`until`] for a condition checked without async (processes, files), from any thread.
pub fn until_blocking(patience: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + scaled(patience);
    loop {
        if check() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn eventually_answers_once_the_condition_holds() {
        let started = Instant::now();
        let mut polls = 0;
        let v = eventually("the third poll", PATIENCE, || {
            polls += 1;
            let n = polls;
            async move { (n == 3).then_some(n) }
        })
        .await;
        assert_eq!(v, 3);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "waiting for: never")]
    async fn eventually_gives_up_after_its_patience() {
        eventually("never", Duration::from_secs(2), || async { None::<()> }).await;
    }

    #[tokio::test(start_paused = true)]
    async fn until_reports_none_when_the_condition_never_holds() {
        assert_eq!(
            until(Duration::from_secs(1), || async { false }).await,
            None
        );
        assert!(
            until(Duration::from_secs(1), || async { true })
                .await
                .is_some()
        );
    }
}
