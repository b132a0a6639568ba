//! Least connections and least response time: the member with the lowest
//! load relative to its weight.
//!
//! - least_connections: load = in-flight requests / weight.
//! - least_response_time: load = Peak-EWMA latency x (in-flight + 1) / weight
//!   (tower's `PeakEwma` cost; Finagle's Peak-EWMA balancer).
//!
//! Up to `FULL_SCAN_MAX` members every usable one is compared and ties are
//! broken at random. Larger pools use the power of two choices over usable
//! members (as Envoy's least_request and tower's p2c do): two random
//! candidates, the lighter wins. That keeps a pick O(1) at 1,000 backends
//! while still steering away from loaded ones.

use super::{Balancer, Member};

const FULL_SCAN_MAX: usize = 32;

pub struct LeastConnections;
pub struct LeastResponseTime;

fn least_by(
    members: &[Member],
    usable: &dyn Fn(usize) -> bool,
    cost: impl Fn(&Member) -> f64,
) -> Option<usize> {
    if members.len() > FULL_SCAN_MAX {
        return two_choices(members, usable, cost);
    }
    let mut best: Option<(usize, f64)> = None;
    let mut ties = 0u32;
    for (i, m) in members.iter().enumerate() {
        if !usable(i) {
            continue;
        }
        let c = cost(m) / m.weight as f64;
        match best {
            Some((_, b)) if c > b => {}
            Some((_, b)) if c == b => {
                // Reservoir sampling: each tied member wins with equal odds.
                ties += 1;
                if fastrand::u32(..ties) == 0 {
                    best = Some((i, c));
                }
            }
            _ => {
                best = Some((i, c));
                ties = 1;
            }
        }
    }
    best.map(|(i, _)| i)
}

fn two_choices(
    members: &[Member],
    usable: &dyn Fn(usize) -> bool,
    cost: impl Fn(&Member) -> f64,
) -> Option<usize> {
    let draw = || {
        (0..8)
            .map(|_| fastrand::usize(..members.len()))
            .find(|&i| usable(i))
            .or_else(|| {
                // Few usable members left: find them by a scan from a random start.
                let start = fastrand::usize(..members.len());
                (0..members.len())
                    .map(|k| (start + k) % members.len())
                    .find(|&i| usable(i))
            })
    };
    let a = draw()?;
    let b = draw().unwrap_or(a);
    let ca = cost(&members[a]) / members[a].weight as f64;
    let cb = cost(&members[b]) / members[b].weight as f64;
    Some(if cb < ca { b } else { a })
}

impl Balancer for LeastConnections {
    fn pick(
        &self,
        members: &[Member],
        _key: Option<u64>,
        usable: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        least_by(members, usable, |m| m.backend.in_flight() as f64)
    }
}

impl Balancer for LeastResponseTime {
    fn pick(
        &self,
        members: &[Member],
        _key: Option<u64>,
        usable: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        least_by(members, usable, |m| m.backend.load_cost())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::members;
    use std::time::Duration;

    #[test]
    fn fewest_in_flight_relative_to_weight() {
        let m = members(&[1, 1, 3]);
        let _l0 = m[0].backend.lease();
        let _l2 = (m[2].backend.lease(), m[2].backend.lease());
        // in-flight/weight: 1, 0, 0.67 -> b1
        assert_eq!(LeastConnections.pick(&m, None, &|_| true), Some(1));
        let _l1 = (m[1].backend.lease(), m[1].backend.lease());
        // 1, 2, 0.67 -> b2
        assert_eq!(LeastConnections.pick(&m, None, &|_| true), Some(2));
        assert_eq!(LeastConnections.pick(&m, None, &|i| i == 0), Some(0));
    }

    #[test]
    fn ties_are_broken_at_random() {
        let m = members(&[1, 1, 1]);
        let mut seen = [0; 3];
        for _ in 0..300 {
            seen[LeastConnections.pick(&m, None, &|_| true).unwrap()] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }

    #[test]
    fn slow_backend_loses_traffic() {
        let m = members(&[1, 1]);
        m[0].backend.observe_latency(Duration::from_millis(200));
        m[1].backend.observe_latency(Duration::from_millis(2));
        for _ in 0..100 {
            assert_eq!(LeastResponseTime.pick(&m, None, &|_| true), Some(1));
        }
    }

    #[test]
    fn large_pools_avoid_loaded_members() {
        let m = members(&[1; 100]);
        let leases: Vec<_> = m[..50]
            .iter()
            .flat_map(|x| [x.backend.lease(), x.backend.lease()])
            .collect();
        let light = (0..1000)
            .filter(|_| LeastConnections.pick(&m, None, &|_| true).unwrap() >= 50)
            .count();
        // With two choices, a pick lands on a loaded member only if both are.
        assert!(light > 700, "{light}");
        drop(leases);
    }
}
