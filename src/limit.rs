//! Token buckets: per backend (`pool.*.rate_limit`) and per client IP
//! (`route.rate_limit`), with the client table bounded in memory.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// A token bucket: `burst` tokens at most, refilled at `rate` per second.
/// Pure; time and settings are passed in.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn full(burst: u32, now: Instant) -> TokenBucket {
        TokenBucket {
            tokens: burst as f64,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant, rate: f64, burst: u32) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst as f64);
        self.last = now;
    }

    /// Whether a token is there now (no change to the bucket's count).
    pub fn has_token(&self, now: Instant, rate: f64, burst: u32) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        (self.tokens + elapsed * rate).min(burst as f64) >= 1.0
    }

    /// Takes one token, or says how long until one is there.
    pub fn try_take(&mut self, now: Instant, rate: f64, burst: u32) -> Result<(), Duration> {
        self.refill(now, rate, burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }

    /// Whether the bucket is full: such an entry is the same as no entry.
    fn is_full(&self, now: Instant, rate: f64, burst: u32) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * rate >= burst as f64
    }
}

/// A backend's bucket behind a lock (one per backend, so uncontended).
#[derive(Debug)]
pub struct SharedBucket(Mutex<Option<TokenBucket>>);

impl Default for SharedBucket {
    fn default() -> Self {
        SharedBucket(Mutex::new(None))
    }
}

impl SharedBucket {
    fn with<T>(&self, now: Instant, burst: u32, f: impl FnOnce(&mut TokenBucket) -> T) -> T {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(g.get_or_insert_with(|| TokenBucket::full(burst, now)))
    }

    pub fn has_token(&self, now: Instant, rate: f64, burst: u32) -> bool {
        self.with(now, burst, |b| b.has_token(now, rate, burst))
    }

    pub fn try_take(&self, now: Instant, rate: f64, burst: u32) -> Result<(), Duration> {
        self.with(now, burst, |b| b.try_take(now, rate, burst))
    }
}

/// Most client IPs a route's limiter tracks at once. At roughly 64 bytes an
/// entry that is about 4 MiB per rate-limited route, however many distinct
/// addresses arrive.
pub const MAX_CLIENTS: usize = 65_536;
const SHARDS: usize = 16;

/// Per-client buckets of one route (a client is its IP, or the value of a
/// header such as an API key, or the whole route: `rate_limit.key`), by a
/// 64-bit keyed hash of what identifies it: sharded maps with a hard cap.
///
/// When a shard is full, entries whose bucket has refilled (idle clients:
/// the same as having no entry) are swept out; if too few have, arbitrary
/// entries are evicted, which at worst hands those clients a fresh burst.
/// Memory stays bounded either way.
pub struct ClientLimiter {
    shards: Vec<Mutex<HashMap<u64, TokenBucket>>>,
    per_shard: usize,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for ClientLimiter {
    fn default() -> Self {
        ClientLimiter::with_capacity(MAX_CLIENTS)
    }
}

impl ClientLimiter {
    pub fn with_capacity(max: usize) -> ClientLimiter {
        ClientLimiter {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: (max / SHARDS).max(1),
            hasher: Default::default(),
        }
    }

    /// The key of a client IP.
    pub fn ip_key(&self, ip: IpAddr) -> u64 {
        self.hasher.hash_one(ip)
    }

    /// The key of a header value (`None`: requests without the header,
    /// which share one bucket).
    pub fn value_key(&self, value: Option<&[u8]>) -> u64 {
        self.hasher.hash_one(value)
    }

    pub fn check(&self, key: u64, now: Instant, rate: f64, burst: u32) -> Result<(), Duration> {
        let shard = &self.shards[(key as usize) % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(&key) && map.len() >= self.per_shard {
            // Sweep idle entries; if the shard is still nearly full, evict
            // down to 7/8 at once so a flood of new addresses costs one
            // sweep per per_shard/8 inserts, not one per insert.
            map.retain(|_, b| !b.is_full(now, rate, burst));
            let target = self.per_shard - self.per_shard / 8 - 1;
            if map.len() > target {
                let victims: Vec<u64> = map.keys().take(map.len() - target).copied().collect();
                for v in victims {
                    map.remove(&v);
                }
            }
        }
        map.entry(key)
            .or_insert_with(|| TokenBucket::full(burst, now))
            .try_take(now, rate, burst)
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The retry budget's window, and the retries it always allows per second
/// so that light traffic can retry.
const WINDOW_SECS: u64 = 10;
const MIN_RETRIES_PER_SEC: f64 = 10.0;

#[derive(Default)]
struct Slot {
    sec: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

/// A pool's retry budget (tower's `retry::budget`, Finagle's): requests
/// and retries over a sliding 10-second window, lock-free. Retries over the
/// window may not exceed a ratio of the requests, plus 10 per second.
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

    #[tokio::test(start_paused = true)]
    async fn bucket_allows_burst_then_rate() {
        let mut b = TokenBucket::full(3, Instant::now());
        for _ in 0..3 {
            assert!(b.try_take(Instant::now(), 2.0, 3).is_ok());
        }
        let wait = b.try_take(Instant::now(), 2.0, 3).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(b.try_take(Instant::now(), 2.0, 3).is_ok());
        assert!(b.try_take(Instant::now(), 2.0, 3).is_err());
        tokio::time::advance(Duration::from_secs(100)).await;
        for _ in 0..3 {
            assert!(
                b.try_take(Instant::now(), 2.0, 3).is_ok(),
                "refills up to burst only"
            );
        }
        assert!(b.try_take(Instant::now(), 2.0, 3).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn client_table_stays_bounded() {
        let l = ClientLimiter::with_capacity(1024);
        for i in 0..200_000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            assert!(l.check(l.ip_key(ip), Instant::now(), 1.0, 5).is_ok());
        }
        assert!(l.len() <= 1024, "{}", l.len());
        // Limits still hold for a client in the table.
        let me = l.ip_key("192.0.2.1".parse().unwrap());
        for _ in 0..5 {
            assert!(l.check(me, Instant::now(), 1.0, 5).is_ok());
        }
        assert!(l.check(me, Instant::now(), 1.0, 5).is_err());
        // Header keys: one bucket per value, one for requests without it.
        let a = l.value_key(Some(b"key-a"));
        assert_ne!(a, l.value_key(Some(b"key-b")));
        assert_eq!(l.value_key(None), l.value_key(None));
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
