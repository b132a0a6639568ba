//! Rate limits shared by every instance (`scope = "global"`): buckets kept
//! in Redis, one round trip per decision.
//!
//! The decision is GCRA (the generic cell rate algorithm, a token bucket
//! stated as one timestamp per key) in a Lua script, so it is atomic on the
//! server, and it reads the server's clock, so instances with skewed
//! clocks still agree. A bucket is one string key that expires when it has
//! refilled, so idle clients cost Redis nothing.
//!
//! One multiplexed connection per process carries every call. A call
//! slower than `timeout`, or failing, returns `None`: the caller decides
//! that request with its local bucket, and the error is counted
//! (`sluice_redis_errors_total`). A failed connection is dropped and opened
//! again in the background at most once a second, so an outage costs each
//! request nothing but the local decision, and the shared buckets come
//! back by themselves with Redis.

use crate::config::RedisConfig;
use arc_swap::ArcSwapOption;
use redis::aio::MultiplexedConnection;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// GCRA: KEYS[1] the bucket; ARGV[1] the interval between requests and
/// ARGV[2] the burst tolerance (interval x burst), both in microseconds.
/// Returns 0 when admitted, else the microseconds until it would be.
const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local next_tat = tat + interval
local wait = next_tat - tolerance - now
if wait > 0 then return math.ceil(wait) end
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1)
return 0
"#;

/// How long after a failed connection the next attempt waits.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

pub struct GlobalLimiter {
    config: RedisConfig,
    client: Option<redis::Client>,
    conn: ArcSwapOption<MultiplexedConnection>,
    connecting: AtomicBool,
    /// Milliseconds since `epoch` before which no connection is tried.
    retry_at: AtomicU64,
    epoch: Instant,
    script: redis::Script,
    errors: prometheus::IntCounter,
}

impl GlobalLimiter {
    pub fn new(config: &RedisConfig, errors: prometheus::IntCounter) -> GlobalLimiter {
        let client = redis::Client::open(config.url.expose())
            .map_err(|e| {
                // The error may quote the URL: log only its kind.
                tracing::error!(url = %config.url, kind = ?e.kind(), "invalid Redis URL; global limits are local");
            })
            .ok();
        GlobalLimiter {
            config: config.clone(),
            client,
            conn: ArcSwapOption::empty(),
            connecting: AtomicBool::new(false),
            retry_at: AtomicU64::new(0),
            epoch: Instant::now(),
            script: redis::Script::new(SCRIPT),
            errors,
        }
    }

    /// The config this limiter was made from (a reload keeps the limiter,
    /// and its connection, while it is unchanged).
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// Takes a token from the shared bucket `key`: `Some(Ok)` admitted,
    /// `Some(Err(retry_after))` refused, `None` when Redis did not answer
    /// in time (decide locally).
    pub async fn check(
        self: &Arc<Self>,
        key: &str,
        rate: f64,
        burst: u32,
    ) -> Option<Result<(), Duration>> {
        let Some(conn) = self.conn.load_full() else {
            self.connect_later();
            self.errors.inc();
            return None;
        };
        let interval = (1e6 / rate).max(1.0).round() as u64;
        let tolerance = interval.saturating_mul(u64::from(burst));
        let mut conn = (*conn).clone();
        let mut invocation = self.script.key(key);
        invocation.arg(interval).arg(tolerance);
        let call = invocation.invoke_async::<u64>(&mut conn);
        match tokio::time::timeout(self.config.timeout, call).await {
            Ok(Ok(0)) => Some(Ok(())),
            Ok(Ok(wait_us)) => Some(Err(Duration::from_micros(wait_us))),
            Ok(Err(e)) => {
                tracing::debug!(kind = ?e.kind(), "Redis call failed; decided locally");
                self.errors.inc();
                if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
                    self.conn.store(None);
                    self.connect_later();
                }
                None
            }
            Err(_) => {
                self.errors.inc();
                None
            }
        }
    }

    /// Opens the connection in the background, unless an attempt is under
    /// way or one failed less than a second ago.
    fn connect_later(self: &Arc<Self>) {
        let Some(client) = self.client.clone() else {
            return;
        };
        let now = self.epoch.elapsed().as_millis() as u64;
        if now < self.retry_at.load(Ordering::Acquire)
            || self.connecting.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let timeout = self.config.timeout.max(Duration::from_millis(500));
        // Weak: a limiter a reload dropped is not kept alive by its
        // connection attempt.
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(timeout)
                // Each call is bounded by `timeout` at the call site.
                .set_response_timeout(Duration::from_secs(5));
            let conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await;
            let Some(me) = me.upgrade() else { return };
            match conn {
                Ok(c) => {
                    tracing::info!(url = %me.config.url, "connected to Redis; global limits are shared");
                    me.conn.store(Some(Arc::new(c)));
                }
                Err(e) => {
                    tracing::warn!(url = %me.config.url, kind = ?e.kind(), "cannot reach Redis; global limits are decided locally");
                    let at = me.epoch.elapsed() + RECONNECT_AFTER;
                    me.retry_at.store(at.as_millis() as u64, Ordering::Release);
                }
            }
            me.connecting.store(false, Ordering::Release);
        });
    }
}
