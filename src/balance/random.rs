//! Weighted random: a binary search over cumulative weights.

use super::{weighted_random_usable, Balancer, Member};

pub struct WeightedRandom {
    cumulative: Vec<u64>,
}

impl WeightedRandom {
    pub fn new(members: &[Member]) -> WeightedRandom {
        let mut sum = 0;
        let cumulative = members
            .iter()
            .map(|m| {
                sum += m.weight as u64;
                sum
            })
            .collect();
        WeightedRandom { cumulative }
    }
}

impl Balancer for WeightedRandom {
    fn pick(
        &self,
        members: &[Member],
        _key: Option<u64>,
        usable: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let total = *self.cumulative.last()?;
        if total == 0 {
            // Every weight set to 0 at run time.
            return None;
        }
        // A few blind draws, then an exact draw among the usable ones.
        for _ in 0..4 {
            let r = fastrand::u64(0..total);
            let i = self.cumulative.partition_point(|&c| c <= r);
            if usable(i) {
                return Some(i);
            }
        }
        weighted_random_usable(members, usable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::members;

    #[test]
    fn follows_weights() {
        let m = members(&[3, 1]);
        let r = WeightedRandom::new(&m);
        let n = 40_000;
        let a = (0..n)
            .filter(|_| r.pick(&m, None, &|_| true) == Some(0))
            .count();
        let share = a as f64 / n as f64;
        assert!((share - 0.75).abs() < 0.02, "{share}");
    }

    #[test]
    fn skips_unusable() {
        let m = members(&[1, 100, 1]);
        let r = WeightedRandom::new(&m);
        for _ in 0..1000 {
            assert_ne!(r.pick(&m, None, &|i| i != 1), Some(1));
        }
        assert_eq!(r.pick(&m, None, &|_| false), None);
    }
}
