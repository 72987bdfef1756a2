//! Latency samples and their percentiles.

use std::time::Duration;

/// Latencies of one operation.
#[derive(Debug, Default)]
pub struct Samples {
    values: Vec<Duration>,
}

impl Samples {
    pub fn push(&mut self, d: Duration) {
        self.values.push(d);
    }

    pub fn extend(&mut self, other: Samples) {
        self.values.extend(other.values);
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// The `p`-th percentile (0..=100) in microseconds, nearest rank.
    pub fn percentile_us(&mut self, p: f64) -> f64 {
        if self.values.is_empty() {
            return 0.0;
        }
        self.values.sort_unstable();
        let rank = ((p / 100.0) * self.values.len() as f64).ceil() as usize;
        let idx = rank.clamp(1, self.values.len()) - 1;
        self.values[idx].as_secs_f64() * 1e6
    }

    /// `name n=.. p50_us=.. p99_us=.. max_us=..`
    pub fn line(&mut self, name: &str) -> String {
        format!(
            "{name:<22} n={:<7} p50_us={:<9.1} p99_us={:<9.1} max_us={:.1}",
            self.len(),
            self.percentile_us(50.0),
            self.percentile_us(99.0),
            self.percentile_us(100.0)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s = Samples::default();
        for i in 1..=100 {
            s.push(Duration::from_micros(i));
        }
        assert_eq!(s.percentile_us(50.0), 50.0);
        assert_eq!(s.percentile_us(99.0), 99.0);
        assert_eq!(s.percentile_us(100.0), 100.0);
        assert_eq!(s.percentile_us(0.0), 1.0);
    }
}
