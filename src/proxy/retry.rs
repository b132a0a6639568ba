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
use crate::snapshot::{Pool, Refusal};
use std::time::Duration;

/// The largest body sluice keeps for a replay.
pub const MAX_KEPT_BODY: usize = 64 * 1024;
/// Connection failures retried on another backend when the pool has no
/// retry table (the table's default `attempts`).
const CONNECT_RETRIES: u32 = 2;
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
    /// The sticky-session token the request carries, if any.
    pinned: Option<u64>,
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
            pinned: None,
            retries: 0,
            sec,
        }
    }

    /// Whether the pool's policy would retry a replayable request at all
    /// (worth keeping its body for).
    pub fn may_replay(pool: &Pool) -> bool {
        pool.config.retry.as_ref().is_some_and(|r| r.attempts > 0)
    }

    /// Goes first to the backend a sticky cookie names, while it may take
    /// the request.
    pub fn pinned(mut self, token: Option<u64>) -> Self {
        self.pinned = token;
        self
    }

    /// The first pick (the pinned backend, if usable); 503 when no backend
    /// may take the request.
    pub fn first(&mut self, metrics: &Metrics) -> Result<(usize, Lease), ProxyError> {
        if let Some(picked) = self.pinned.and_then(|t| self.pool.pick_pinned(t)) {
            return Ok(picked);
        }
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
        if tried == Tried::ConnectFailed {
            lease.backend().mark_unreachable();
        }
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
        // Without a retry table, a connection failure is still retried
        // (nginx's proxy_next_upstream error, on by default): it loaded no
        // backend. Everything else needs the table.
        let attempts = self.policy.map_or(CONNECT_RETRIES, |p| p.attempts);
        if self.retries >= attempts {
            return Next::Done;
        }
        let retry = match (tried, self.policy) {
            (Tried::ConnectFailed, None) => true,
            (_, None) => false,
            (tried, Some(policy)) => match tried {
                Tried::ConnectFailed => policy.on_connect_failure,
                _ if !self.replayable => false,
                Tried::Timeout => policy.on_timeout,
                Tried::Response(s) => policy.on_status.contains(&s),
                Tried::Broken => policy.on_status.contains(&502),
            },
        };
        if !retry {
            return Next::Done;
        }
        let backoff = match self.policy {
            Some(policy) if tried != Tried::ConnectFailed => match self.backoff_in_budget(policy) {
                Some(b) => b,
                None => return Next::Done,
            },
            _ => Duration::ZERO,
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
}
