//! Retries: when a request may be replayed, the body it keeps for that,
//! full-jitter backoff, and the retry budget.
//!
//! The budget follows tower's `retry::budget` (and Finagle's): retries over
//! the last 10 s may not exceed `budget_ratio` of the requests over the last
//! 10 s, plus 10 per second so that light traffic can always retry. A bare
//! max-retries would let every request of an outage be tried `attempts + 1`
//! times, multiplying the load on a pool that is already failing.

use super::body::RequestBody;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method};
use http_body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The largest body sluice keeps for a replay.
pub const MAX_KEPT_BODY: usize = 64 * 1024;
const WINDOW_SECS: u64 = 10;
const MIN_RETRIES_PER_SEC: f64 = 10.0;

/// Whole seconds since the first call: the budget's clock (tokio's, so
/// tests can pause it).
pub fn now_sec() -> u64 {
    static START: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(tokio::time::Instant::now)
        .elapsed()
        .as_secs()
}

/// Whether the spec allows replaying this request: an idempotent method, or
/// any request carrying `Idempotency-Key`.
pub fn replay_safe(method: &Method, headers: &HeaderMap) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    ) || headers.contains_key("idempotency-key")
}

/// The request body after trying to keep it for replays.
pub enum Kept {
    /// Whole and small enough: can be sent any number of times.
    Whole(Bytes),
    /// Too large (or failed to read): sent once, as it streams.
    Once(RequestBody),
}

/// Reads up to `MAX_KEPT_BODY` of the body. A body announced larger than
/// that is not read at all; a chunked one that turns out larger is sent
/// once, the part already read first.
pub async fn keep_body(body: Incoming) -> Kept {
    if body.is_end_stream() {
        return Kept::Whole(Bytes::new());
    }
    if body.size_hint().lower() > MAX_KEPT_BODY as u64 {
        return Kept::Once(RequestBody::Stream(body));
    }
    let mut body = body;
    let mut buf = BytesMut::new();
    loop {
        match body.frame().await {
            None => return Kept::Whole(buf.freeze()),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                }
                if buf.len() > MAX_KEPT_BODY {
                    return Kept::Once(RequestBody::Prefixed(Some(buf.freeze()), body));
                }
            }
            // The client's body broke off: forward what arrived and let the
            // backend see the truncation rather than inventing a request.
            Some(Err(_)) => return Kept::Once(RequestBody::Prefixed(Some(buf.freeze()), body)),
        }
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
    fn replay_safety() {
        let h = HeaderMap::new();
        assert!(replay_safe(&Method::GET, &h));
        assert!(replay_safe(&Method::PUT, &h));
        assert!(!replay_safe(&Method::POST, &h));
        assert!(!replay_safe(&Method::PATCH, &h));
        let mut k = HeaderMap::new();
        k.insert("idempotency-key", "abc".parse().unwrap());
        assert!(replay_safe(&Method::POST, &k));
    }

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
