//! Balancing strategies: each picks one backend of a pool's snapshot.
//!
//! A strategy is a pure function of the members, an optional hash key and a
//! `usable` predicate; it does no I/O and admits nothing. The pool checks
//! health, breaker, rate limit and bulkhead through `usable`, and admits the
//! pick afterwards (see `pool::Pool::pick`). Structures that cost work to
//! build (schedules, rings, cumulative weights) are built once per snapshot.

mod hash;
mod least;
mod random;
mod round_robin;

pub use hash::{hash_bytes, Ring};

use crate::backend::Backend;
use std::sync::Arc;

/// One backend as a pool's snapshot sees it.
#[derive(Clone)]
pub struct Member {
    pub backend: Arc<Backend>,
    pub weight: u32,
}

/// Picks one member index for which `usable` is true, or `None`.
pub trait Balancer: Send + Sync {
    fn pick(
        &self,
        members: &[Member],
        key: Option<u64>,
        usable: &dyn Fn(usize) -> bool,
    ) -> Option<usize>;
}

/// Builds the balancer for `strategy` over `members`.
pub fn build(kind: Kind, members: &[Member]) -> Arc<dyn Balancer> {
    match kind {
        Kind::SmoothWeightedRoundRobin => Arc::new(round_robin::SmoothWeighted::new(members)),
        Kind::LeastConnections => Arc::new(least::LeastConnections),
        Kind::PeakEwma => Arc::new(least::LeastResponseTime),
        Kind::ConsistentHash => Arc::new(hash::Ring::new(members)),
        Kind::WeightedRandom => Arc::new(random::WeightedRandom::new(members)),
    }
}

/// The algorithms, by what they are (the config's strategy names map onto
/// these; the two hash strategies share the ring and differ only in the
/// key they hash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    SmoothWeightedRoundRobin,
    LeastConnections,
    PeakEwma,
    ConsistentHash,
    WeightedRandom,
}

/// Weighted random choice among the usable members: the common fallback
/// when a strategy's first choices are all unusable.
pub(crate) fn weighted_random_usable(
    members: &[Member],
    usable: &dyn Fn(usize) -> bool,
) -> Option<usize> {
    let total: u64 = (0..members.len())
        .filter(|&i| usable(i))
        .map(|i| members[i].weight as u64)
        .sum();
    if total == 0 {
        return None;
    }
    let mut r = fastrand::u64(0..total);
    for (i, m) in members.iter().enumerate() {
        if !usable(i) {
            continue;
        }
        let w = m.weight as u64;
        if r < w {
            return Some(i);
        }
        r -= w;
    }
    None
}

#[cfg(test)]
pub(crate) mod testing {
    use super::Member;
    use crate::backend::Backend;
    use std::sync::Arc;
    use std::time::Duration;

    /// Members named b0, b1, ... with the given weights.
    pub fn members(weights: &[u32]) -> Vec<Member> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Member {
                backend: Arc::new(Backend::new(
                    "p",
                    &format!("10.0.0.{i}:80"),
                    Duration::from_secs(1),
                )),
                weight: w,
            })
            .collect()
    }
}
