//! The wall clock the control planes read (token expiry, certificate validity, offline grace,
//! timestamps written to resources), as a value passed in rather than `Utc::now()` called
//! inline, so tests can move time instead of sleeping through it.
//!
//! - [`SystemClock`]: production, the host's clock.
//! - [`TokioClock`]: wall time that advances with tokio's clock. Under
//!   `#[tokio::test(start_paused = true)]` (or `tokio::time::pause()`), `tokio::time::advance`
//!   and auto-advance during sleeps move it too, so timers (`tokio::time::sleep`) and
//!   timestamps stay consistent with each other.
//! - [`ManualClock`]: a clock that moves only when told to (pure unit tests).

use std::fmt;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};

/// A source of wall-clock time.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// How clocks are passed around.
pub type SharedClock = Arc<dyn Clock>;

/// The host's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The host's clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// Wall time anchored at creation and advanced by tokio's clock since then: with tokio's time
/// paused, it moves exactly as far as `tokio::time::advance` (or auto-advance) moves it.
#[derive(Debug, Clone)]
pub struct TokioClock {
    wall_at_start: DateTime<Utc>,
    tokio_at_start: tokio::time::Instant,
}

impl TokioClock {
    /// Starts at the host's current time.
    pub fn new() -> Self {
        Self::starting_at(Utc::now())
    }

    /// Starts at `wall` (a fixed date makes a test's timestamps reproducible).
    pub fn starting_at(wall: DateTime<Utc>) -> Self {
        TokioClock {
            wall_at_start: wall,
            tokio_at_start: tokio::time::Instant::now(),
        }
    }

    pub fn shared(self) -> SharedClock {
        Arc::new(self)
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.tokio_at_start);
        // An elapsed time beyond chrono's range (hundreds of millions of years) cannot occur.
        let elapsed = TimeDelta::from_std(elapsed).unwrap_or(TimeDelta::MAX);
        self.wall_at_start
            .checked_add_signed(elapsed)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// A clock that stands still until [`ManualClock::advance`] or [`ManualClock::set`].
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Arc<Self> {
        Arc::new(ManualClock {
            now: Mutex::new(start),
        })
    }

    pub fn advance(&self, by: TimeDelta) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now = now
            .checked_add_signed(by)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
    }

    pub fn set(&self, to: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|e| panic!("test date {s}: {e}"))
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_moves_with_paused_time() {
        let clock = TokioClock::starting_at(at("2026-01-01T00:00:00Z"));
        assert_eq!(clock.now(), at("2026-01-01T00:00:00Z"));
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.now(), at("2026-01-01T00:01:30Z"));
        // A sleep with paused time auto-advances to its deadline.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(clock.now(), at("2026-01-01T01:01:30Z"));
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(at("2026-01-01T00:00:00Z"));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clock.now(), at("2026-01-01T00:00:00Z"));
        clock.advance(TimeDelta::seconds(31));
        assert_eq!(clock.now(), at("2026-01-01T00:00:31Z"));
        clock.set(at("2027-01-01T00:00:00Z"));
        assert_eq!(clock.now(), at("2027-01-01T00:00:00Z"));
    }

    #[test]
    fn system_clock_reads_the_host_clock() {
        let before = Utc::now();
        let read = SystemClock.now();
        assert!(read >= before && read <= Utc::now());
    }
}
