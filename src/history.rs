//! The last five minutes of every backend, for the status page's charts:
//! requests and errors per second and p99 latency, sampled once a second
//! into a bounded ring per backend (300 samples, about 4 KiB each).
//!
//! Samples are differences of what the request path counts anyway (the
//! backend's try and error totals, its upstream-duration histogram), so
//! the history costs the request path nothing. It is keyed by (pool, addr),
//! like the backend state, and forgets backends that left the config.

use crate::snapshot::{Shared, Snapshot};
use prometheus::core::Metric;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// Samples kept per backend: five minutes at one a second.
pub const SAMPLES: usize = 300;

/// One second of one backend.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    pub requests: f32,
    pub errors: f32,
    /// p99 of the upstream durations of that second, in ms (0 without
    /// requests), from the histogram's buckets (so at bucket resolution).
    pub p99_ms: f32,
}

#[derive(Default)]
struct Series {
    samples: VecDeque<Sample>,
    last_requests: u64,
    last_errors: u64,
    last_buckets: Vec<u64>,
}

/// (pool, addr), as the backend state is keyed.
type Key = (Arc<str>, Arc<str>);

#[derive(Default)]
pub struct History {
    series: Mutex<HashMap<Key, Series>>,
}

/// The p99 of the observations between two cumulative bucket snapshots:
/// the upper bound of the first bucket holding 99% of them.
pub fn p99(bounds: &[f64], before: &[u64], now: &[u64]) -> f64 {
    let total = match (now.last(), before.last()) {
        (Some(n), Some(b)) => n.saturating_sub(*b),
        (Some(n), None) => *n,
        _ => 0,
    };
    if total == 0 {
        return 0.0;
    }
    let want = (total as f64 * 0.99).ceil() as u64;
    for (i, bound) in bounds.iter().enumerate() {
        let got = now[i].saturating_sub(before.get(i).copied().unwrap_or(0));
        if got >= want {
            return *bound;
        }
    }
    // Past the last finite bound: report that bound (the chart's ceiling).
    bounds.last().copied().unwrap_or(0.0)
}

impl History {
    /// Takes one sample of every backend of `snap`.
    pub fn sample(&self, snap: &Snapshot) {
        let mut all = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let mut seen = Vec::new();
        for pool in snap.pools.values() {
            for (i, m) in pool.members.iter().enumerate() {
                let key = (pool.name.clone(), m.backend.addr.clone());
                let (requests, errors) = m.backend.totals();
                let h = pool.upstream_duration[i].metric();
                let buckets = h.get_histogram().get_bucket();
                let bounds: Vec<f64> = buckets.iter().map(|b| b.upper_bound()).collect();
                let counts: Vec<u64> = buckets.iter().map(|b| b.cumulative_count()).collect();
                let s = all.entry(key.clone()).or_insert_with(|| Series {
                    // The first sample starts from now, not from zero.
                    last_requests: requests,
                    last_errors: errors,
                    last_buckets: counts.clone(),
                    ..Default::default()
                });
                let sample = Sample {
                    requests: requests.saturating_sub(s.last_requests) as f32,
                    errors: errors.saturating_sub(s.last_errors) as f32,
                    p99_ms: (p99(&bounds, &s.last_buckets, &counts) * 1000.0) as f32,
                };
                if s.samples.len() == SAMPLES {
                    s.samples.pop_front();
                }
                s.samples.push_back(sample);
                (s.last_requests, s.last_errors, s.last_buckets) = (requests, errors, counts);
                seen.push(key);
            }
        }
        all.retain(|k, _| seen.contains(k));
    }

    /// The samples of one backend, oldest first.
    pub fn of(&self, pool: &str, addr: &str) -> Vec<Sample> {
        let all = self.series.lock().unwrap_or_else(|p| p.into_inner());
        all.iter()
            .find(|((p, a), _)| &**p == pool && &**a == addr)
            .map(|(_, s)| s.samples.iter().copied().collect())
            .unwrap_or_default()
    }
}

/// Samples once a second for as long as sluice runs.
pub async fn run(shared: Weak<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.history.sample(&shared.snapshot());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_is_the_bound_of_the_bucket_that_holds_99_percent() {
        let bounds = [0.001, 0.01, 0.1, 1.0];
        // 100 new observations: 98 under 1 ms, 1 under 10 ms, 1 under 100 ms.
        let before = [10, 10, 10, 10];
        let now = [108, 109, 110, 110];
        assert_eq!(p99(&bounds, &before, &now), 0.01);
        // Nothing new: 0.
        assert_eq!(p99(&bounds, &now, &now), 0.0);
        // All slow: the last bound.
        assert_eq!(p99(&bounds, &[0, 0, 0, 0], &[0, 0, 0, 5]), 1.0);
    }

    #[tokio::test]
    async fn samples_are_per_second_differences_and_the_ring_is_bounded() {
        let config = crate::config::Config::parse(
            "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n[[route]]\npool = \"p\"\n[pool.p]\nbackends = [{ addr = \"10.0.0.1:80\" }]\n",
        )
        .unwrap();
        let metrics = crate::metrics::Metrics::default();
        let snap = Snapshot::build(config, Default::default(), None, &metrics);
        let h = History::default();
        h.sample(&snap);
        let b = &snap.pools["p"].members[0].backend;
        for _ in 0..7 {
            b.count_try(false);
        }
        b.count_try(true);
        snap.pools["p"].upstream_duration[0].observe(0.004);
        h.sample(&snap);
        let s = h.of("p", "10.0.0.1:80");
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].requests, s[1].requests, s[1].errors), (0.0, 8.0, 1.0));
        assert_eq!(s[1].p99_ms, 5.0, "the 5 ms bucket");
        for _ in 0..SAMPLES + 10 {
            h.sample(&snap);
        }
        assert_eq!(h.of("p", "10.0.0.1:80").len(), SAMPLES);
    }
}
