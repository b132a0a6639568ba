//! Smooth weighted round robin (nginx's algorithm, `ngx_http_upstream_round_robin.c`).
//!
//! Weights 3:1 give A A B A, not A A A B. The sequence is computed once per
//! snapshot (its length is the sum of the weights divided by their gcd), and
//! a pick is one atomic ticket into it: no lock on the hot path. A ticket
//! that lands on an unusable member takes the next ticket, so the remaining
//! members keep their relative shares instead of the successor inheriting
//! the unusable one's turns.

use super::{weighted_random_usable, Balancer, Member};
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct SmoothWeighted {
    schedule: Vec<u32>,
    next: AtomicUsize,
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl SmoothWeighted {
    pub fn new(members: &[Member]) -> SmoothWeighted {
        let g = members.iter().fold(0, |g, m| gcd(g, m.weight)).max(1);
        let weights: Vec<i64> = members.iter().map(|m| (m.weight / g) as i64).collect();
        let total: i64 = weights.iter().sum();
        let mut current = vec![0i64; weights.len()];
        let mut schedule = Vec::with_capacity(total as usize);
        for _ in 0..total {
            let mut best = 0;
            for i in 0..weights.len() {
                current[i] += weights[i];
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            schedule.push(best as u32);
        }
        SmoothWeighted {
            schedule,
            // From the start of the sequence, as nginx: the order is
            // predictable (3:1 is A A B A from the first request).
            next: AtomicUsize::new(0),
        }
    }
}

impl Balancer for SmoothWeighted {
    fn pick(
        &self,
        members: &[Member],
        _key: Option<u64>,
        usable: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        if self.schedule.is_empty() {
            return None;
        }
        for _ in 0..members.len().min(64) {
            let t = self.next.fetch_add(1, Ordering::Relaxed);
            let i = self.schedule[t % self.schedule.len()] as usize;
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

    fn sequence(weights: &[u32], n: usize, usable: &dyn Fn(usize) -> bool) -> Vec<usize> {
        let m = members(weights);
        let rr = SmoothWeighted::new(&m);
        (0..n).map(|_| rr.pick(&m, None, usable).unwrap()).collect()
    }

    #[test]
    fn three_to_one_is_a_a_b_a() {
        assert_eq!(
            sequence(&[3, 1], 8, &|_| true),
            vec![0, 0, 1, 0, 0, 0, 1, 0]
        );
    }

    #[test]
    fn five_one_one_is_smooth() {
        // nginx's documented example: a a b a c a a.
        assert_eq!(
            sequence(&[5, 1, 1], 7, &|_| true),
            vec![0, 0, 1, 0, 2, 0, 0]
        );
    }

    #[test]
    fn unusable_member_is_skipped_and_shares_stay_even() {
        let picks = sequence(&[1, 1, 1], 300, &|i| i != 1);
        let a = picks.iter().filter(|&&i| i == 0).count();
        let c = picks.iter().filter(|&&i| i == 2).count();
        assert_eq!(a + c, 300);
        assert_eq!(a, 150);
    }

    #[test]
    fn none_usable_is_none() {
        let m = members(&[1, 2]);
        assert_eq!(SmoothWeighted::new(&m).pick(&m, None, &|_| false), None);
    }
}
