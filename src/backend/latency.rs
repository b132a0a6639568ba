//! Peak-EWMA latency estimate (Finagle's `PeakEwma`, as in tower's `load`).
//!
//! A sample above the estimate replaces it at once (the "peak"), so a backend
//! that slows down is penalised on its next response; lower samples are
//! blended in with a weight that depends on the time since the last update.
//! Reads decay the estimate toward zero with the same time constant, so a
//! backend that lost all its traffic for being slow is probed again after a
//! while instead of being starved forever.
//!
//! Lock-free: two relaxed atomics. Concurrent updates may lose a sample,
//! which an estimate can afford; it cannot afford a lock on every response.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct PeakEwma {
    /// f64 bits of the estimate in nanoseconds.
    estimate: AtomicU64,
    /// When `estimate` was last written, nanoseconds on the caller's clock.
    stamp: AtomicU64,
}

impl PeakEwma {
    /// Records one response time. `decay_ns` is the time constant.
    pub fn observe(&self, rtt_ns: u64, now_ns: u64, decay_ns: f64) {
        let rtt = rtt_ns as f64;
        let prev = self.current(now_ns, decay_ns);
        let next = if rtt > prev {
            rtt
        } else {
            let elapsed = now_ns.saturating_sub(self.stamp.load(Ordering::Relaxed)) as f64;
            let w = (-elapsed / decay_ns).exp();
            prev * w + rtt * (1.0 - w)
        };
        self.estimate.store(next.to_bits(), Ordering::Relaxed);
        self.stamp.store(now_ns, Ordering::Relaxed);
    }

    /// The estimate at `now_ns`, decayed since the last sample.
    pub fn current(&self, now_ns: u64, decay_ns: f64) -> f64 {
        let est = f64::from_bits(self.estimate.load(Ordering::Relaxed));
        if est == 0.0 {
            return 0.0;
        }
        let elapsed = now_ns.saturating_sub(self.stamp.load(Ordering::Relaxed)) as f64;
        est * (-elapsed / decay_ns).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const DECAY: f64 = 10e9;
    const MS: u64 = 1_000_000;

    #[test]
    fn peaks_jump_up_at_once() {
        let e = PeakEwma::default();
        e.observe(MS, 0, DECAY);
        e.observe(200 * MS, 1, DECAY);
        assert!((e.current(1, DECAY) - 200.0 * MS as f64).abs() < 1e3);
    }

    #[test]
    fn lower_samples_blend_in_and_idle_decays() {
        let e = PeakEwma::default();
        e.observe(100 * MS, 0, DECAY);
        e.observe(MS, 10_000 * MS, DECAY); // one time constant later
        let v = e.current(10_000 * MS, DECAY);
        assert!(v > MS as f64 && v < 40.0 * MS as f64, "{v}");
        // Ten time constants of silence bring it close to zero.
        assert!(e.current(110_000 * MS, DECAY) < 0.01 * MS as f64);
    }
}
