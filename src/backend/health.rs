//! The health of one backend from active checks: a small pure counter.
//!
//! `healthy_threshold` consecutive successes bring a down backend up;
//! `unhealthy_threshold` consecutive failures take an up backend down. A
//! backend new to the config starts up, but if its very first check fails
//! it goes down at once (no point sending traffic to a backend that has
//! never answered a check).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthCounter {
    pub up: bool,
    checked: bool,
    successes: u32,
    failures: u32,
}

impl Default for HealthCounter {
    fn default() -> Self {
        HealthCounter {
            up: true,
            checked: false,
            successes: 0,
            failures: 0,
        }
    }
}

impl HealthCounter {
    /// Records one check result; returns the new state if it flipped.
    pub fn observe(
        &mut self,
        ok: bool,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
    ) -> Option<bool> {
        let first = !std::mem::replace(&mut self.checked, true);
        if ok {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            if !self.up && self.successes >= healthy_threshold {
                self.up = true;
                return Some(true);
            }
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
            if self.up && (first || self.failures >= unhealthy_threshold) {
                self.up = false;
                return Some(false);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_flip_the_state() {
        let mut h = HealthCounter::default();
        assert_eq!(h.observe(true, 2, 3), None);
        assert_eq!(h.observe(false, 2, 3), None);
        assert_eq!(h.observe(false, 2, 3), None);
        assert_eq!(h.observe(false, 2, 3), Some(false));
        assert_eq!(h.observe(true, 2, 3), None);
        assert_eq!(
            h.observe(false, 2, 3),
            None,
            "a failure resets the success count"
        );
        assert_eq!(h.observe(true, 2, 3), None);
        assert_eq!(h.observe(true, 2, 3), Some(true));
    }

    #[test]
    fn a_failed_first_check_is_down_at_once() {
        let mut h = HealthCounter::default();
        assert_eq!(h.observe(false, 2, 3), Some(false));
        assert!(!h.up);
    }
}
