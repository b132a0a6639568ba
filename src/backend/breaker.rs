//! A per-backend circuit breaker, written as a readable state machine
//! (after linkerd2-proxy's), with time passed in.
//!
//! Closed: requests flow; `failure_threshold` consecutive failures (connect
//! error, timeout, 5xx) open it. Open: no request reaches the backend until
//! `open_duration` has passed; then half-open. Half-open: `half_open_requests`
//! trial requests are let through; a success closes the breaker, a failure
//! opens it again for another `open_duration`.
//!
//! `Breaker` wraps the state machine for the hot path: while closed, checks
//! and successes touch only atomics; the lock is taken on failures and while
//! open or half-open.

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { trials: u32 },
}

impl State {
    /// 0 closed, 1 open, 2 half-open: the `sluice_circuit_breaker_state` gauge.
    pub fn code(&self) -> u8 {
        match self {
            State::Closed => 0,
            State::Open { .. } => 1,
            State::HalfOpen { .. } => 2,
        }
    }

    pub fn name(&self) -> &'static str {
        ["closed", "open", "half_open"][self.code() as usize]
    }
}

/// Thresholds from the config, passed in on every call.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub failure_threshold: u32,
    pub open_duration: Duration,
    pub half_open_requests: u32,
}

/// The pure state machine.
#[derive(Debug)]
pub struct Machine {
    pub state: State,
    failures: u32,
}

impl Default for Machine {
    fn default() -> Self {
        Machine {
            state: State::Closed,
            failures: 0,
        }
    }
}

impl Machine {
    /// Whether a request could be admitted now (no state change).
    pub fn allows(&self, now: Instant, s: &Settings) -> bool {
        match self.state {
            State::Closed => true,
            State::Open { until } => now >= until,
            State::HalfOpen { trials } => trials < s.half_open_requests,
        }
    }

    /// Admits one request, moving open -> half-open when its time is up.
    pub fn admit(&mut self, now: Instant, s: &Settings) -> bool {
        match self.state {
            State::Closed => true,
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen { trials: 1 };
                true
            }
            State::Open { .. } => false,
            State::HalfOpen { trials } if trials < s.half_open_requests => {
                self.state = State::HalfOpen { trials: trials + 1 };
                true
            }
            State::HalfOpen { .. } => false,
        }
    }

    /// A trial that ended without an outcome (cancelled) gives its slot back.
    pub fn release_trial(&mut self) {
        if let State::HalfOpen { trials } = self.state {
            self.state = State::HalfOpen {
                trials: trials.saturating_sub(1),
            };
        }
    }

    /// Records an outcome; returns `(from, to)` on a transition.
    pub fn record(&mut self, success: bool, now: Instant, s: &Settings) -> Option<(State, State)> {
        let from = self.state;
        match (self.state, success) {
            (State::Closed, true) => self.failures = 0,
            (State::Closed, false) => {
                self.failures += 1;
                if self.failures >= s.failure_threshold {
                    self.state = State::Open {
                        until: now + s.open_duration,
                    };
                }
            }
            (State::HalfOpen { .. }, true) => {
                self.failures = 0;
                self.state = State::Closed;
            }
            (State::HalfOpen { .. }, false) => {
                self.state = State::Open {
                    until: now + s.open_duration,
                }
            }
            // Late outcomes of requests admitted before the breaker opened.
            (State::Open { .. }, _) => {}
        }
        (from.code() != self.state.code()).then_some((from, self.state))
    }
}

/// The breaker as the hot path uses it.
#[derive(Debug, Default)]
pub struct Breaker {
    machine: Mutex<Machine>,
    /// Mirrors `machine.state.code()`, read without the lock.
    code: AtomicU8,
    /// Consecutive failures while closed; mirrors the machine's count so
    /// that a success while closed with no failures needs no lock.
    closed_failures: AtomicU32,
}

impl Breaker {
    fn with<T>(&self, f: impl FnOnce(&mut Machine) -> T) -> T {
        // A poisoned lock only means another thread panicked mid-update;
        // the machine's fields are always consistent, so keep using it.
        let mut m = self.machine.lock().unwrap_or_else(|p| p.into_inner());
        let out = f(&mut m);
        self.code.store(m.state.code(), Ordering::Release);
        out
    }

    pub fn state(&self) -> State {
        self.with(|m| m.state)
    }

    pub fn code(&self) -> u8 {
        self.code.load(Ordering::Acquire)
    }

    pub fn allows(&self, now: Instant, s: &Settings) -> bool {
        self.code() == 0 || self.with(|m| m.allows(now, s))
    }

    /// Admits a request; `Some(is_trial)` when admitted.
    pub fn admit(&self, now: Instant, s: &Settings) -> Option<bool> {
        if self.code() == 0 {
            return Some(false);
        }
        self.with(|m| {
            let trial = !matches!(m.state, State::Closed);
            m.admit(now, s).then_some(trial)
        })
    }

    pub fn release_trial(&self) {
        self.with(|m| m.release_trial());
    }

    pub fn record(&self, success: bool, now: Instant, s: &Settings) -> Option<(State, State)> {
        if success && self.code() == 0 && self.closed_failures.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.with(|m| {
            let t = m.record(success, now, s);
            self.closed_failures.store(m.failures, Ordering::Relaxed);
            t
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Settings = Settings {
        failure_threshold: 3,
        open_duration: Duration::from_secs(30),
        half_open_requests: 1,
    };

    #[tokio::test(start_paused = true)]
    async fn opens_fails_fast_goes_half_open_and_closes() {
        let b = Breaker::default();
        let now = Instant::now();
        assert_eq!(b.record(false, now, &S), None);
        assert_eq!(b.record(true, now, &S), None, "a success resets the count");
        b.record(false, now, &S);
        b.record(false, now, &S);
        let (from, to) = b.record(false, now, &S).unwrap();
        assert_eq!((from.name(), to.name()), ("closed", "open"));
        assert!(!b.allows(Instant::now(), &S));
        assert_eq!(b.admit(Instant::now(), &S), None);

        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(b.admit(Instant::now(), &S), None, "still open");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.admit(Instant::now(), &S), Some(true), "one trial");
        assert_eq!(b.state().name(), "half_open");
        assert_eq!(
            b.admit(Instant::now(), &S),
            None,
            "only half_open_requests trials"
        );
        let (_, to) = b.record(true, Instant::now(), &S).unwrap();
        assert_eq!(to, State::Closed);
        assert_eq!(b.admit(Instant::now(), &S), Some(false));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_trial_reopens_and_a_cancelled_one_frees_its_slot() {
        let b = Breaker::default();
        for _ in 0..3 {
            b.record(false, Instant::now(), &S);
        }
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(b.admit(Instant::now(), &S), Some(true));
        b.release_trial();
        assert_eq!(
            b.admit(Instant::now(), &S),
            Some(true),
            "the slot came back"
        );
        let (_, to) = b.record(false, Instant::now(), &S).unwrap();
        assert_eq!(to.name(), "open");
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(
            !b.allows(Instant::now(), &S),
            "reopened for a full open_duration"
        );
    }
}
