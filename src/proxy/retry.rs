//! Retries: when a request may be replayed, the body it keeps for that,
//! full-jitter backoff, and the retry budget.
//!
//! The budget follows tower's `retry::budget` (and Finagle's): retries over
//! the last 10 s may not exceed `budget_ratio` of the requests over the last
//! 10 s, plus 10 per second so that light traffic can always retry. A bare
//! max-retries would let every request of an outage be tried `attempts + 1`
//! times, multiplying the load on a pool that is already failing.

use super::error::ProxyError;
use crate::backend::Lease;
use crate::config::RetryConfig;
use crate::metrics::Metrics;
use crate::runtime::{Pool, Refusal};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The largest body sluice keeps for a replay.
pub const MAX_KEPT_BODY: usize = 64 * 1024;
const WINDOW_SECS: u64 = 10;
const MIN_RETRIES_PER_SEC: f64 = 10.0;
/// Retry-After for a pool with no usable backend: about the time a health
/// check or breaker needs to let one back in.
const NO_BACKEND_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Whole seconds since the first call: the budget's clock (tokio's, so
/// tests can pause it).
pub fn now_sec() -> u64 {
    static START: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(tokio::time::Instant::now)
        .elapsed()
        .as_secs()
}

/// How one try ended, as the breaker, the metrics and the retry policy
/// see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tried {
    /// A response head with this status.
    Response(u16),
    /// No connection: nothing was sent.
    ConnectFailed,
    /// No response head within request_timeout.
    Timeout,
    /// The connection broke or the answer was not HTTP (502).
    Broken,
}

impl Tried {
    /// The status counted in `sluice_upstream_requests_total`.
    pub fn code(self) -> u16 {
        match self {
            Tried::Response(s) => s,
            Tried::Timeout => 504,
            Tried::ConnectFailed | Tried::Broken => 502,
        }
    }
}

/// What to do after a try.
pub enum Next {
    /// Answer with what the last try gave.
    Done,
    /// Try again on `next` after `backoff`.
    Retry {
        backoff: Duration,
        next: (usize, Lease),
    },
}

/// The tries of one request on one pool: picks, outcomes and the retry
/// policy, the same for every front end.
pub struct Attempts<'p> {
    pool: &'p Pool,
    key: Option<u64>,
    policy: Option<&'p RetryConfig>,
    /// The request can be sent again (no body, or one kept whole).
    replayable: bool,
    /// Members tried so far; only filled once a retry is considered.
    tried: Vec<usize>,
    pub retries: u32,
    sec: u64,
}

impl<'p> Attempts<'p> {
    pub fn new(pool: &'p Pool, key: Option<u64>, replayable: bool) -> Attempts<'p> {
        let policy = pool.config.retry.as_ref();
        let sec = now_sec();
        if policy.is_some() {
            pool.budget.deposit(sec);
        }
        Attempts {
            pool,
            key,
            policy,
            replayable,
            tried: Vec::new(),
            retries: 0,
            sec,
        }
    }

    /// Whether the pool's policy would retry a replayable request at all
    /// (worth keeping its body for).
    pub fn may_replay(pool: &Pool) -> bool {
        pool.config.retry.as_ref().is_some_and(|r| r.attempts > 0)
    }

    /// The first pick; 503 when no backend may take the request.
    pub fn first(&mut self, metrics: &Metrics) -> Result<(usize, Lease), ProxyError> {
        self.pool.pick(self.key, &[]).map_err(|refusal| {
            if refusal == Refusal::RateLimited {
                metrics
                    .rate_limited
                    .with_label_values(&["backend", &self.pool.name])
                    .inc();
            }
            ProxyError::NoBackend {
                retry_after: NO_BACKEND_RETRY_AFTER,
            }
        })
    }

    /// Records how the try on member `i` went (latency, breaker, counts,
    /// metrics) and decides whether to try again.
    ///
    /// A connection failure sent nothing, so it is retried at once on
    /// another backend, for any method, without backoff and outside the
    /// budget (the spec's retry section). Other failures are retried only
    /// for a replayable request, within the budget, after a full-jitter
    /// backoff.
    pub fn after(&mut self, i: usize, lease: &mut Lease, tried: Tried, metrics: &Metrics) -> Next {
        let rtt = lease.observe();
        let success = matches!(tried, Tried::Response(s) if s < 500);
        lease.record(success, self.pool.breaker.as_ref());
        let backend = lease.backend().clone();
        backend.count_try(!success);
        let mut code = itoa::Buffer::new();
        metrics
            .upstream_requests
            .with_label_values(&[&*self.pool.name, &*backend.addr, code.format(tried.code())])
            .inc();
        self.pool.upstream_duration[i].observe(rtt.as_secs_f64());
        let Some(policy) = self.policy else {
            return Next::Done;
        };
        if self.retries >= policy.attempts {
            return Next::Done;
        }
        let retry = match tried {
            Tried::ConnectFailed => policy.on_connect_failure,
            _ if !self.replayable => false,
            Tried::Timeout => policy.on_timeout,
            Tried::Response(s) => policy.on_status.contains(&s),
            Tried::Broken => policy.on_status.contains(&502),
        };
        if !retry {
            return Next::Done;
        }
        let backoff = if tried == Tried::ConnectFailed {
            Duration::ZERO
        } else {
            match self.backoff_in_budget(policy) {
                Some(b) => b,
                None => return Next::Done,
            }
        };
        self.tried.push(i);
        // Another backend if one is left, else any usable one.
        let Ok(next) = self
            .pool
            .pick(self.key, &self.tried)
            .or_else(|_| self.pool.pick(self.key, &[]))
        else {
            return Next::Done;
        };
        tracing::debug!(pool = %self.pool.name, backend = %backend.addr, retry = self.retries + 1, "retrying");
        metrics.retries.with_label_values(&[&*self.pool.name]).inc();
        self.retries += 1;
        Next::Retry { backoff, next }
    }

    fn backoff_in_budget(&self, policy: &RetryConfig) -> Option<Duration> {
        self.pool
            .budget
            .try_withdraw(self.sec, policy.budget_ratio)
            .then(|| backoff(self.retries, policy.backoff, policy.backoff_max))
    }
}

/// Full jitter (AWS architecture blog, "Exponential Backoff And Jitter"):
/// sleep a random time in [0, min(max, base x 2^retry)].
pub fn backoff(retry: u32, base: Duration, max: Duration) -> Duration {
    let cap = base.saturating_mul(1u32 << retry.min(20)).min(max);
    Duration::from_nanos(fastrand::u64(..=cap.as_nanos() as u64))
}

#[derive(Default)]
struct Slot {
    sec: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

/// Requests and retries over a sliding 10-second window, lock-free.
#[derive(Default)]
pub struct Budget {
    slots: [Slot; WINDOW_SECS as usize],
}

impl Budget {
    fn slot(&self, sec: u64) -> &Slot {
        let s = &self.slots[(sec % WINDOW_SECS) as usize];
        // The first to see a new second clears the slot's old counts.
        // (A count racing with the reset may be lost: fine for a budget.)
        if s.sec.load(Ordering::Acquire) != sec && s.sec.swap(sec, Ordering::AcqRel) != sec {
            s.requests.store(0, Ordering::Release);
            s.retries.store(0, Ordering::Release);
        }
        s
    }

    /// Counts one request (not its retries). `sec` is a monotonic second.
    pub fn deposit(&self, sec: u64) {
        self.slot(sec).requests.fetch_add(1, Ordering::AcqRel);
    }

    /// Takes one retry from the budget if it has room.
    pub fn try_withdraw(&self, sec: u64, ratio: f64) -> bool {
        let slot = self.slot(sec);
        let (mut requests, mut retries) = (0u64, 0u64);
        for s in &self.slots {
            let at = s.sec.load(Ordering::Acquire);
            if at + WINDOW_SECS > sec && at <= sec {
                requests += s.requests.load(Ordering::Acquire);
                retries += s.retries.load(Ordering::Acquire);
            }
        }
        let allowed = ratio * requests as f64 + MIN_RETRIES_PER_SEC * WINDOW_SECS as f64;
        if (retries + 1) as f64 <= allowed {
            slot.retries.fetch_add(1, Ordering::AcqRel);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_full_jitter() {
        let base = Duration::from_millis(25);
        let max = Duration::from_secs(1);
        for retry in 0..10 {
            let cap = (base * 2u32.pow(retry)).min(max);
            for _ in 0..50 {
                assert!(backoff(retry, base, max) <= cap);
            }
        }
        let spread: std::collections::HashSet<_> = (0..20).map(|_| backoff(3, base, max)).collect();
        assert!(spread.len() > 10, "jitter should spread sleeps");
    }

    #[test]
    fn budget_holds_retries_to_the_ratio_plus_the_floor() {
        let b = Budget::default();
        for _ in 0..1000 {
            b.deposit(100);
        }
        let granted = (0..1000).filter(|_| b.try_withdraw(100, 0.2)).count();
        // 20% of 1000 requests + 10/s over 10 s.
        assert_eq!(granted, 300);
    }

    #[test]
    fn the_window_slides() {
        let b = Budget::default();
        for _ in 0..500 {
            b.deposit(5);
        }
        while b.try_withdraw(5, 0.0) {}
        assert!(
            !b.try_withdraw(14, 0.0),
            "second 5 still in the window at 14"
        );
        assert!(b.try_withdraw(15, 0.0), "second 5 left the window at 15");
    }
}
