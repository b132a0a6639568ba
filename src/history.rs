//! The last five minutes of every backend, for the status page's charts:
//! requests and errors per second and p99 latency, sampled once a second
//! into a bounded ring per backend (300 samples, about 4 KiB each).
//!
//! Samples are differences of what the request path counts anyway (the
//! backend's try and error totals, its upstream-duration histogram), so
//! the history costs the request path nothing. It is keyed by (pool, addr),
//! like the backend state, and forgets backends that left the config.

use prometheus::core::Metric;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

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
    /// Takes one sample of every backend given (and forgets the others).
    pub fn sample<'a>(&self, backends: impl Iterator<Item = Observed<'a>>) {
        let mut all = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let mut seen = Vec::new();
        for o in backends {
            let key = (o.pool.clone(), o.addr.clone());
            let (requests, errors) = o.totals;
            let h = o.durations.metric();
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
        all.retain(|k, _| seen.contains(k));
    }

    /// The samples of one backend, oldest first.
    pub fn of(&self, pool: &str, addr: &str) -> Vec<Sample> {
        let all = self.series.lock().unwrap_or_else(|p| p.into_inner());
        all.get(&(Arc::from(pool), Arc::from(addr)))
            .map(|s| s.samples.iter().copied().collect())
            .unwrap_or_default()
    }
}

/// One backend as the sampler sees it.
pub struct Observed<'a> {
    pub pool: &'a Arc<str>,
    pub addr: &'a Arc<str>,
    /// (tries, failed tries) so far.
    pub totals: (u64, u64),
    /// Its upstream-duration histogram.
    pub durations: &'a prometheus::Histogram,
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

    #[test]
    fn samples_are_per_second_differences_and_the_ring_is_bounded() {
        let (pool, addr): (Arc<str>, Arc<str>) = ("p".into(), "10.0.0.1:80".into());
        let durations = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new("d", "d").buckets(vec![0.001, 0.005, 0.01]),
        )
        .unwrap();
        let h = History::default();
        let at = |totals| Observed {
            pool: &pool,
            addr: &addr,
            totals,
            durations: &durations,
        };
        h.sample(std::iter::once(at((0, 0))));
        durations.observe(0.004);
        h.sample(std::iter::once(at((8, 1))));
        let s = h.of("p", "10.0.0.1:80");
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].requests, s[1].requests, s[1].errors), (0.0, 8.0, 1.0));
        assert_eq!(s[1].p99_ms, 5.0, "the 5 ms bucket");
        for _ in 0..SAMPLES + 10 {
            h.sample(std::iter::once(at((8, 1))));
        }
        assert_eq!(h.of("p", "10.0.0.1:80").len(), SAMPLES);
        // A backend no longer given is forgotten.
        h.sample(std::iter::empty());
        assert!(h.of("p", "10.0.0.1:80").is_empty());
    }
}
