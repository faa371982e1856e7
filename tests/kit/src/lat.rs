//! Latency samples and their percentiles (the benchmark's measure, and the fan-out readers').

use std::time::Duration;

/// Latency samples in microseconds.
#[derive(Default, Clone)]
pub struct Lat {
    pub us: Vec<u32>,
}

impl Lat {
    pub fn push(&mut self, d: Duration) {
        self.us.push(d.as_micros().min(u32::MAX as u128) as u32);
    }

    pub fn merge(&mut self, other: Lat) {
        self.us.extend(other.us);
    }

    pub fn sort(&mut self) {
        self.us.sort_unstable();
    }

    /// Percentile in milliseconds; call `sort` first.
    pub fn pct_ms(&self, p: f64) -> f64 {
        if self.us.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.us.len() as f64).ceil() as usize;
        let i = rank.clamp(1, self.us.len()) - 1;
        self.us[i] as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.us.iter().copied().max().unwrap_or(0) as f64 / 1000.0
    }
}
