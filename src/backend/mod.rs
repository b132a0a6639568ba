//! Per-backend state that outlives config snapshots.
//!
//! A `Backend` is keyed by (pool, addr as written). The snapshot holds an
//! `Arc` to it, and a reload that keeps the backend reuses the same `Arc`, so
//! in-flight counts, the latency estimate and pooled connections carry over.
//! Nothing here stores config: thresholds and decay come in as arguments.

pub mod breaker;
pub mod conns;
pub mod h2;
pub mod health;
pub mod latency;
pub mod stream;

use crate::limit::SharedBucket;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Time constant of the latency estimate's decay (Finagle and linkerd use 10 s).
pub const LATENCY_DECAY: Duration = Duration::from_secs(10);

/// How long a backend whose connection failed is passed over (while
/// another backend can serve). Short: a backend back up is used again
/// within a second, without any health check.
pub const UNREACHABLE_FOR: Duration = Duration::from_secs(1);

pub struct Backend {
    pub pool: Arc<str>,
    pub addr: Arc<str>,
    in_flight: AtomicU64,
    /// Tries sent and tries that failed (connect error, timeout, 5xx),
    /// for the status page's rates.
    requests: AtomicU64,
    errors: AtomicU64,
    latency: latency::PeakEwma,
    /// Read on every pick; written by the health checker.
    up: AtomicBool,
    health: Mutex<health::HealthCounter>,
    pub breaker: breaker::Breaker,
    pub bucket: SharedBucket,
    /// Pooled connections (see `conns`).
    pub conns: conns::Conns,
    /// Origin of this backend's nanosecond clock for the latency estimate.
    epoch: Instant,
    /// Until when (ns since `epoch`) the backend is passed over after a
    /// connection to it failed.
    unreachable_until: AtomicU64,
    /// Runtime control (`PUT /api/v1/pools/..`): kept here, outside the
    /// snapshot, so it outlives reloads while the backend stays.
    admin_state: AtomicU8,
    /// The runtime weight, or `NO_WEIGHT` for the file's.
    weight_override: AtomicU32,
    /// When the slow-start ramp began (ns since `epoch`, plus one); 0: not
    /// ramping.
    ramp_from: AtomicU64,
    /// Requests in flight to the whole pool (one counter shared by its
    /// backends, kept by pool name across reloads): the average that
    /// bounded-load hashing compares against, without a pass over members.
    pool_in_flight: std::sync::OnceLock<Arc<AtomicU64>>,
}

const NO_WEIGHT: u32 = u32::MAX;

/// What an operator set at run time: `ready` takes requests as usual,
/// `drain` takes no new ones (in-flight ones finish), `maint` takes none
/// and is not health-checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminState {
    Ready = 0,
    Drain = 1,
    Maint = 2,
}

impl AdminState {
    pub fn name(self) -> &'static str {
        match self {
            AdminState::Ready => "ready",
            AdminState::Drain => "drain",
            AdminState::Maint => "maint",
        }
    }

    pub fn parse(s: &str) -> Option<AdminState> {
        match s {
            "ready" => Some(AdminState::Ready),
            "drain" => Some(AdminState::Drain),
            "maint" => Some(AdminState::Maint),
            _ => None,
        }
    }
}

impl Backend {
    pub fn new(pool: &str, addr: &str, connect_timeout: Duration) -> Backend {
        Backend {
            pool: pool.into(),
            addr: addr.into(),
            in_flight: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: latency::PeakEwma::default(),
            up: AtomicBool::new(true),
            health: Mutex::new(health::HealthCounter::default()),
            breaker: breaker::Breaker::default(),
            bucket: SharedBucket::default(),
            conns: conns::Conns::new(connect_timeout),
            epoch: Instant::now(),
            unreachable_until: AtomicU64::new(0),
            admin_state: AtomicU8::new(AdminState::Ready as u8),
            weight_override: AtomicU32::new(NO_WEIGHT),
            ramp_from: AtomicU64::new(0),
            pool_in_flight: std::sync::OnceLock::new(),
        }
    }

    /// Counts this backend's requests in `pool`'s counter too (set once:
    /// the backend belongs to one pool for its life).
    pub fn join_pool(&self, pool: &Arc<AtomicU64>) {
        let _ = self.pool_in_flight.set(pool.clone());
    }

    /// The backend just became usable: a slow start begins from here.
    pub fn start_ramp(&self) {
        self.ramp_from.store(self.now_ns() + 1, Ordering::Relaxed);
    }

    /// The share of its weight the backend has now, 0.1 to 1.0, ramping
    /// linearly over `over` from when it became usable.
    pub fn ramp(&self, now: Instant, over: Duration) -> f64 {
        let from = self.ramp_from.load(Ordering::Relaxed);
        if from == 0 {
            return 1.0;
        }
        let elapsed =
            (now.saturating_duration_since(self.epoch).as_nanos() as u64).saturating_sub(from - 1);
        let done = elapsed as f64 / over.as_nanos().max(1) as f64;
        if done >= 1.0 {
            // Ramped: later picks skip the arithmetic.
            let _ = self
                .ramp_from
                .compare_exchange(from, 0, Ordering::Relaxed, Ordering::Relaxed);
            return 1.0;
        }
        0.1 + 0.9 * done
    }

    pub fn admin_state(&self) -> AdminState {
        match self.admin_state.load(Ordering::Acquire) {
            1 => AdminState::Drain,
            2 => AdminState::Maint,
            _ => AdminState::Ready,
        }
    }

    pub fn set_admin_state(&self, state: AdminState) {
        self.admin_state.store(state as u8, Ordering::Release);
    }

    /// The runtime weight, if one is set.
    pub fn weight_override(&self) -> Option<u32> {
        match self.weight_override.load(Ordering::Acquire) {
            NO_WEIGHT => None,
            w => Some(w),
        }
    }

    pub fn set_weight_override(&self, weight: Option<u32>) {
        self.weight_override
            .store(weight.unwrap_or(NO_WEIGHT), Ordering::Release);
    }

    /// Counts one try and whether it failed.
    pub fn count_try(&self, failed: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (tries, failed tries) since the backend entered the config.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Records an active check result; returns the new state if it flipped.
    pub fn observe_check(
        &self,
        ok: bool,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
    ) -> Option<bool> {
        let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let flipped = h.observe(ok, healthy_threshold, unhealthy_threshold);
        self.up.store(h.up, Ordering::Release);
        if flipped == Some(true) {
            self.start_ramp();
        }
        flipped
    }

    /// Forgets check results: the pool no longer checks this backend.
    pub fn reset_health(&self) {
        let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        *h = health::HealthCounter::default();
        self.up.store(true, Ordering::Release);
    }

    /// A connection to the backend failed (refused, unreachable, timed
    /// out): pass it over for `UNREACHABLE_FOR`, as nginx does for
    /// `fail_timeout` after `max_fails` (1) failures, so that requests do
    /// not each pay a failed connect while it is down.
    pub fn mark_unreachable(&self) {
        let until = self.now_ns() + UNREACHABLE_FOR.as_nanos() as u64;
        self.unreachable_until.fetch_max(until, Ordering::Relaxed);
    }

    /// Whether no connection failed recently (see `mark_unreachable`).
    pub fn reachable(&self, now: Instant) -> bool {
        let until = self.unreachable_until.load(Ordering::Relaxed);
        until == 0 || now.saturating_duration_since(self.epoch).as_nanos() as u64 >= until
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn count_pool(&self, up: i64) {
        if let Some(p) = self.pool_in_flight.get() {
            if up > 0 {
                p.fetch_add(1, Ordering::Relaxed);
            } else {
                p.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// The decayed latency estimate in nanoseconds.
    pub fn latency_ns(&self) -> f64 {
        self.latency
            .current(self.now_ns(), LATENCY_DECAY.as_nanos() as f64)
    }

    /// Peak-EWMA load: latency x (in-flight + 1), as tower's `PeakEwma`.
    pub fn load_cost(&self) -> f64 {
        // Floor at 1 ns so that backends with no sample yet (estimate 0)
        // are still ordered by their in-flight requests.
        let latency = self.latency_ns().max(1.0);
        latency * (self.in_flight() + 1) as f64
    }

    pub fn observe_latency(&self, rtt: Duration) {
        self.latency.observe(
            rtt.as_nanos() as u64,
            self.now_ns(),
            LATENCY_DECAY.as_nanos() as f64,
        );
    }

    /// Like `lease`, but refuses when `max` requests (0 = unlimited) are in
    /// flight already: the per-backend bulkhead. Exact under concurrency.
    pub fn try_lease(self: &Arc<Self>, max: u32) -> Option<Lease> {
        if max == 0 {
            return Some(self.lease());
        }
        let mut current = self.in_flight.load(Ordering::Relaxed);
        loop {
            if current >= max as u64 {
                return None;
            }
            match self.in_flight.compare_exchange_weak(
                current,
                current + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.count_pool(1);
                    return Some(Lease {
                        backend: self.clone(),
                        start: Instant::now(),
                        trial: false,
                    });
                }
                Err(now) => current = now,
            }
        }
    }

    /// Counts one request in flight until the returned lease drops.
    pub fn lease(self: &Arc<Self>) -> Lease {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.count_pool(1);
        Lease {
            backend: self.clone(),
            start: Instant::now(),
            trial: false,
        }
    }
}

/// One request's hold on a backend: counted in flight from creation until it
/// drops, so no early return, error or cancelled future leaks a slot.
pub struct Lease {
    backend: Arc<Backend>,
    start: Instant,
    /// A half-open breaker's trial whose outcome is not recorded yet.
    trial: bool,
}

impl Lease {
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }

    /// Records the time from the start of the lease until now (the response
    /// head, or a failure) as a latency sample.
    pub fn observe(&self) -> Duration {
        let rtt = self.start.elapsed();
        self.backend.observe_latency(rtt);
        rtt
    }

    pub fn set_trial(&mut self, trial: bool) {
        self.trial = trial;
    }

    /// Records the outcome for the circuit breaker (when the pool has one).
    pub fn record(&mut self, success: bool, settings: Option<&breaker::Settings>) {
        self.trial = false;
        if let Some(s) = settings {
            if let Some((from, to)) = self.backend.breaker.record(success, Instant::now(), s) {
                if to == breaker::State::Closed {
                    self.backend.start_ramp();
                }
                tracing::warn!(pool = %self.backend.pool, backend = %self.backend.addr, from = from.name(), to = to.name(), "circuit breaker changed state");
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.trial {
            // Cancelled before an outcome: the trial slot goes back.
            self.backend.breaker.release_trial();
        }
        self.backend.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.backend.count_pool(-1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_failed_connection_passes_the_backend_over_for_a_while() {
        let b = Backend::new("p", "10.0.0.1:80", Duration::from_secs(1));
        assert!(b.reachable(Instant::now()));
        b.mark_unreachable();
        assert!(!b.reachable(Instant::now()));
        tokio::time::advance(UNREACHABLE_FOR - Duration::from_millis(1)).await;
        assert!(!b.reachable(Instant::now()));
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(b.reachable(Instant::now()));
    }
}
