//! A pool as one snapshot sees it, and admission in one place: whether a
//! backend may take a request (`reasons`: health, the pass-over after a
//! failed connection, breaker, rate limit, bulkhead), and taking what it
//! needs to (`admit`: the bulkhead slot, a token, a half-open trial). The
//! strategy only picks among the backends this says are usable (see
//! `balance`), and `explain` shows the same reasons.
//!
//! A pool kept by a reload (same name) keeps its retry budget, and, when
//! its strategy and members (addr and weight) are unchanged, its balancer
//! with it (the round-robin position, the hash ring).

use crate::backend::breaker;
use crate::backend::{AdminState, Backend, Lease};
use crate::balance::{self, Balancer, Member};
use crate::config::PoolConfig;
use crate::limit::Budget;
use crate::metrics::Metrics;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::time::Instant;

/// Why a backend may not take a request now; none set means it may.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reasons {
    /// Its health checks fail.
    pub down: bool,
    /// A connection to it failed a moment ago (passed over while another
    /// backend can serve).
    pub unreachable: bool,
    pub breaker_open: bool,
    pub rate_limited: bool,
    pub max_in_flight: bool,
    /// Runtime control: drained or in maintenance.
    pub drain: bool,
    pub maint: bool,
    /// Weight 0 (set at run time) takes no new requests.
    pub weight_zero: bool,
}

impl Reasons {
    /// Whether the backend may take a request; `passive`: the pass-over
    /// after a failed connection counts too.
    pub fn usable(self, passive: bool) -> bool {
        !(self.down
            || (passive && self.unreachable)
            || self.breaker_open
            || self.rate_limited
            || self.max_in_flight
            || self.drain
            || self.maint
            || self.weight_zero)
    }

    /// The names of the reasons set, as `explain` lists them. The pass-over
    /// after a failed connection is reported as `down` (it is the passive
    /// form of a failed check).
    pub fn names(self) -> Vec<&'static str> {
        [
            (self.down || self.unreachable, "down"),
            (self.breaker_open, "breaker_open"),
            (self.rate_limited, "rate_limited"),
            (self.max_in_flight, "max_in_flight"),
            (self.drain, "drain"),
            (self.maint, "maint"),
            (self.weight_zero, "weight_zero"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect()
    }
}

/// A pool as one snapshot sees it: members, settings and a balancer.
pub struct Pool {
    pub name: Arc<str>,
    pub config: PoolConfig,
    pub members: Vec<Member>,
    /// Per member: the address it resolved to when this snapshot was built.
    pub addrs: Vec<SocketAddr>,
    /// Per member: its `sluice_upstream_request_duration_seconds` series,
    /// resolved once here rather than looked up on every try.
    pub upstream_duration: Vec<prometheus::Histogram>,
    balancer: Arc<dyn Balancer>,
    pub breaker: Option<breaker::Settings>,
    /// Requests and retries of the last 10 s, for `retry.budget_ratio`.
    pub budget: Arc<Budget>,
    /// Requests in flight to the pool (see `Backend::join_pool`); kept by
    /// name across reloads, like the budget.
    in_flight: Arc<std::sync::atomic::AtomicU64>,
    /// Sticky-session tokens (see `sticky::token`) to member indexes.
    tokens: std::collections::HashMap<u64, usize>,
    /// TLS to the backends: the pool's client settings, and per member the
    /// name it is verified as (None: not a valid name; it cannot connect).
    tls: Option<Arc<rustls::ClientConfig>>,
    server_names: Vec<Option<rustls::pki_types::ServerName<'static>>>,
    /// Per member: its weight in the file.
    config_weights: Vec<u32>,
}

/// Why a pool could not admit a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every backend that is otherwise usable is out of rate-limit tokens.
    RateLimited,
    NoBackend,
}

impl Pool {
    /// How to connect to member `i`: TLS (with its name) or plain. Err: the
    /// pool speaks TLS but the member has no name to verify.
    pub fn tls_target(
        &self,
        i: usize,
    ) -> Result<Option<crate::backend::stream::TlsTarget<'_>>, std::io::Error> {
        let Some(config) = &self.tls else {
            return Ok(None);
        };
        match self.server_names.get(i).and_then(Option::as_ref) {
            Some(name) => Ok(Some(crate::backend::stream::TlsTarget { config, name })),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "no TLS server name for this backend (set [pool.X.tls] server_name)",
            )),
        }
    }

    /// The member a sticky token names, if it is in the pool.
    pub fn pinned_member(&self, token: u64) -> Option<usize> {
        self.tokens.get(&token).copied()
    }

    /// Admits the member a sticky token names, if it may take the request:
    /// usable, except that drain still honours the sessions pinned to it.
    pub fn pick_pinned(&self, token: u64) -> Option<(usize, Lease)> {
        let i = self.pinned_member(token)?;
        let now = Instant::now();
        let mut r = self.reasons(i, now);
        r.drain = false;
        if !r.usable(true) {
            return None;
        }
        self.admit(i, now).map(|lease| (i, lease))
    }

    /// Member `i`'s weight in the file.
    pub fn config_weight(&self, i: usize) -> u32 {
        self.config_weights.get(i).copied().unwrap_or(0)
    }

    /// The weight member `i` has now: its runtime or file weight, times the
    /// slow-start ramp (at least 1 while the weight is not 0).
    pub fn effective_weight(&self, i: usize, now: Instant) -> u32 {
        let m = &self.members[i];
        match self.config.slow_start {
            Some(over) if m.weight > 0 => {
                ((m.weight as f64 * m.backend.ramp(now, over)).round() as u32).max(1)
            }
            _ => m.weight,
        }
    }

    /// Whether a pick that landed on member `i` keeps it: always, unless it
    /// is ramping up (slow start), when only with its ramp's probability,
    /// so that its share of traffic follows the ramp under every strategy.
    fn ramp_keeps(&self, i: usize, now: Instant) -> bool {
        match self.config.slow_start {
            None => true,
            Some(over) => {
                let f = self.members[i].backend.ramp(now, over);
                f >= 1.0 || fastrand::f64() < f
            }
        }
    }

    /// Whether member `i` is under the bounded-load limit (hash strategies
    /// with `hash_balance_factor`): it may hold at most
    /// ceil(factor x (the pool's requests in flight + 1) / members).
    fn under_bound(&self, i: usize, bound: u64) -> bool {
        self.members[i].backend.in_flight() < bound
    }

    /// The bounded-load limit now, if the pool has one.
    fn load_bound(&self) -> Option<u64> {
        let factor = self.config.hash_balance_factor;
        let hashing = matches!(
            self.config.strategy,
            crate::config::Strategy::IpHash | crate::config::Strategy::UrlHash
        );
        (factor > 0.0 && hashing && !self.members.is_empty()).then(|| {
            let total = self.in_flight.load(std::sync::atomic::Ordering::Relaxed);
            (factor * (total + 1) as f64 / self.members.len() as f64).ceil() as u64
        })
    }

    /// Every reason member `i` may not take a request now. Health, the
    /// pass-over after a failed connection, breaker, rate limit and
    /// bulkhead are checked here and nowhere else; this only looks,
    /// `admit` takes.
    pub fn reasons(&self, i: usize, now: Instant) -> Reasons {
        let b = &self.members[i].backend;
        let max = self.config.max_in_flight;
        let state = b.admin_state();
        Reasons {
            drain: state == AdminState::Drain,
            maint: state == AdminState::Maint,
            weight_zero: self.members[i].weight == 0,
            down: !b.is_up(),
            unreachable: !b.reachable(now),
            breaker_open: self
                .breaker
                .as_ref()
                .is_some_and(|s| !b.breaker.allows(now, s)),
            rate_limited: self
                .config
                .rate_limit
                .as_ref()
                .is_some_and(|r| !b.bucket.has_token(now, r.requests_per_second, r.burst)),
            max_in_flight: max > 0 && b.in_flight() >= max as u64,
        }
    }

    /// Takes what member `i` needs to serve one request: a bulkhead slot (the
    /// lease), a rate-limit token and, if its breaker is half-open, a trial.
    fn admit(&self, i: usize, now: Instant) -> Option<Lease> {
        let b = &self.members[i].backend;
        let mut lease = b.try_lease(self.config.max_in_flight)?;
        if let Some(r) = &self.config.rate_limit {
            b.bucket
                .try_take(now, r.requests_per_second, r.burst)
                .ok()?;
        }
        if let Some(s) = &self.breaker {
            lease.set_trial(b.breaker.admit(now, s)?);
        }
        Some(lease)
    }

    /// Picks a member (skipping those in `tried`) and admits it.
    pub fn pick(&self, key: Option<u64>, tried: &[usize]) -> Result<(usize, Lease), Refusal> {
        let now = Instant::now();
        // Admission can lose a race the `usable` check won (another request
        // took the last slot or token): exclude that member and pick again.
        let mut refused: Vec<usize> = Vec::new();
        // A backend that just refused a connection is passed over while
        // another can serve (nginx's max_fails=1); when none can, it is
        // tried anyway rather than answering 503.
        let bound = self.load_bound();
        for passive in [true, false] {
            for _ in 0..4 {
                let candidate = |i: usize| {
                    !tried.contains(&i)
                        && !refused.contains(&i)
                        && self.reasons(i, now).usable(passive)
                        && self.ramp_keeps(i, now)
                };
                // Bounded loads: the first candidate on the ring that is not
                // overloaded; if every one is, the first candidate.
                let picked = match bound {
                    Some(b) => self
                        .balancer
                        .pick(&self.members, key, &|i| {
                            candidate(i) && self.under_bound(i, b)
                        })
                        .or_else(|| self.balancer.pick(&self.members, key, &candidate)),
                    None => self.balancer.pick(&self.members, key, &candidate),
                };
                let Some(i) = picked else {
                    break;
                };
                if let Some(lease) = self.admit(i, now) {
                    return Ok((i, lease));
                }
                refused.push(i);
            }
        }
        Err(self.refusal(now))
    }

    /// The member a request with hash `key` would be sent to now, without
    /// admitting it: for `explain`, and only meaningful for the hash
    /// strategies (the others move on with every pick).
    pub fn would_pick(&self, key: u64) -> Option<usize> {
        let now = Instant::now();
        self.balancer.pick(&self.members, Some(key), &|i| {
            self.reasons(i, now).usable(true)
        })
    }

    /// Why nothing was admitted: rate limits, if a token would have made a
    /// backend usable; otherwise no backend at all.
    fn refusal(&self, now: Instant) -> Refusal {
        let blocked_by_tokens = (0..self.members.len()).any(|i| {
            let r = self.reasons(i, now);
            r.rate_limited && !r.down && !r.breaker_open && !r.drain && !r.maint && !r.weight_zero
        });
        if blocked_by_tokens {
            Refusal::RateLimited
        } else {
            Refusal::NoBackend
        }
    }
}

mod build;
#[cfg(test)]
#[path = "../pool_tests.rs"]
mod tests;
