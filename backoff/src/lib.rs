//! Capped exponential back-off for retry loops: the delay to wait, never the waiting itself
//! (callers sleep with `tokio::time`, so tests can run them under paused time).

use std::time::Duration;

/// Delays that start at `initial` and double after each one up to `max`, optionally jittered.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
    /// xorshift64* state when jitter is on.
    jitter: Option<u64>,
}

impl Backoff {
    /// Without jitter: `initial`, `2 * initial`, ... up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            current: initial,
            jitter: None,
        }
    }

    /// Each delay drawn from `[d/2, d]` ("equal jitter": half fixed, so a retry never comes
    /// immediately; half random, so clients that failed together spread out).
    pub fn with_jitter(mut self) -> Self {
        // Seeded per instance from the OS, so back-offs created at the same instant (a fleet
        // of simulated proxies, replicas restarted together) do not draw the same delays.
        let seed = getrandom::u64().unwrap_or_else(|_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
        });
        // xorshift must not start from zero.
        self.jitter = Some(seed | 1);
        self
    }

    /// Back to `initial`, after an attempt that lasted long enough to count as a success.
    pub fn reset(&mut self) {
        self.current = self.initial;
    }

    /// The delay before the next attempt; the one after it doubles, up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.current.min(self.max);
        self.current = self.current.saturating_mul(2).min(self.max);
        match &mut self.jitter {
            None => base,
            Some(state) => base / 2 + base.mul_f64(unit_interval(state) / 2.0),
        }
    }
}

/// The next xorshift64* draw as a fraction in `[0, 1)`.
fn unit_interval(state: &mut u64) -> f64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    let r = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
    // The top 53 bits fill an f64's mantissa exactly.
    (r >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let seen: Vec<u64> = (0..7).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(seen, vec![1, 2, 4, 8, 16, 30, 30]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }

    #[test]
    fn an_initial_above_the_cap_is_capped() {
        let mut b = Backoff::new(Duration::from_secs(60), Duration::from_secs(30));
        assert_eq!(b.next_delay(), Duration::from_secs(30));
    }

    #[test]
    fn jitter_stays_within_half_and_whole_of_the_delay() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30)).with_jitter();
        let mut expected = Duration::from_millis(500);
        for i in 0..20 {
            let d = b.next_delay();
            assert!(
                d >= expected / 2 && d <= expected,
                "{i}: {d:?} for {expected:?}"
            );
            expected = (expected * 2).min(Duration::from_secs(30));
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(500));
    }

    #[test]
    fn jittered_back_offs_spread_out() {
        let delays: std::collections::BTreeSet<Duration> = (0..16)
            .map(|_| {
                Backoff::new(Duration::from_secs(10), Duration::from_secs(10))
                    .with_jitter()
                    .next_delay()
            })
            .collect();
        assert!(delays.len() > 1, "{delays:?}");
    }
}
