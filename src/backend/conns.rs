//! The connections to one backend: a cap on how many are open (HAProxy's
//! `maxconn`, the pool's `max_connections`), a bounded wait for one when
//! all are busy (`timeout queue`, the pool's `queue_timeout`), and the idle
//! ones kept between requests, one LIFO list per worker thread.
//!
//! The HTTP/1 engine takes a connection, drives it itself for the length of
//! an exchange (no connection task, no channel) and gives it back when the
//! response has ended cleanly. A connection counts against the cap from
//! connect until it closes, idle or busy: the `Conn` carries a slot that
//! frees itself when it drops.
//!
//! A pooled socket is nobody's to read while it idles, so a backend that
//! closed it is noticed at checkout: tokio records readiness as epoll
//! reports it, and an idle socket that became readable has either been
//! closed (end of input) or sent bytes nobody asked for; both are dropped
//! (Pingora checks the same way, with a one-byte read). The check costs a
//! system call only when readiness was reported.
//!
//! Idle lists are per worker thread: a socket is driven by the runtime
//! that registered it, so a worker reuses its own connections. A request
//! waiting at the cap takes a connection freed on any worker: one idle on
//! another worker is closed to make room for a new one here.

use super::stream::{TlsTarget, UpStream};
use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long an idle pooled connection is kept. Shorter than the usual
/// backend keep-alive timeouts (nginx 75 s, Node 5 s is the outlier), so
/// sluice rarely reuses a connection the backend is about to close.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// Idle connections kept per backend and worker; more are closed when
/// they come back.
const MAX_IDLE: usize = 128;

static WORKERS: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// How many worker threads serve traffic (set once at start, before any
/// backend is made).
pub fn set_workers(n: usize) {
    WORKERS.store(n.max(1), Ordering::Relaxed);
}

/// Which worker the calling thread is (set by each worker thread).
pub fn set_worker(i: usize) {
    WORKER.with(|w| w.set(i));
}

fn worker() -> usize {
    WORKER.with(|w| w.get())
}

struct Idle {
    stream: UpStream,
    slot: Slot,
    addr: SocketAddr,
    since: Instant,
}

#[derive(Default)]
struct IdleList {
    conns: Vec<Idle>,
    /// Whether a reaper task is closing this list's stale connections.
    reaping: bool,
}

struct Shared {
    /// One list per worker.
    idle: Box<[Mutex<IdleList>]>,
    /// Connections open, idle or busy, on every worker.
    open: AtomicUsize,
    /// Requests waiting for a connection.
    waiting: AtomicUsize,
    /// A connection went idle or closed.
    freed: Notify,
    connect_timeout_ms: AtomicU64,
    opened: AtomicU64,
}

/// A backend's connections and its retunable connect timeout.
pub struct Conns {
    shared: Arc<Shared>,
    /// Its HTTP/2 connections, when its pool speaks HTTP/2.
    h2: super::h2::H2Conns,
}

/// A connection's place under the cap; gives it back when dropped.
struct Slot(Weak<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(s) = self.0.upgrade() {
            s.open.fetch_sub(1, Ordering::AcqRel);
            s.freed.notify_one();
        }
    }
}

/// An open connection to a backend.
pub struct Conn {
    pub stream: UpStream,
    slot: Slot,
    /// False for a connection opened with a PROXY header naming one client:
    /// it serves that request only and is never pooled.
    pub reusable: bool,
}

/// A place under the cap taken for an HTTP/2 stream (`Conns::stream`).
pub struct Permit(Slot);

impl Conn {
    /// One HTTP/2 stream as a connection of one exchange, never pooled.
    pub fn mux(stream: UpStream, permit: Permit) -> Conn {
        Conn {
            stream,
            slot: permit.0,
            reusable: false,
        }
    }
}

/// Why no connection was had.
#[derive(Debug)]
pub enum GetError {
    /// Connecting failed (refused, unreachable, timed out).
    Connect(io::Error),
    /// Every connection stayed busy for the whole queue timeout.
    Queue,
}

impl Conns {
    pub fn new(connect_timeout: Duration) -> Conns {
        let workers = WORKERS.load(Ordering::Relaxed);
        Conns {
            shared: Arc::new(Shared {
                idle: (0..workers).map(|_| Mutex::default()).collect(),
                open: AtomicUsize::new(0),
                waiting: AtomicUsize::new(0),
                freed: Notify::new(),
                connect_timeout_ms: AtomicU64::new(connect_timeout.as_millis() as u64),
                opened: AtomicU64::new(0),
            }),
            h2: Default::default(),
        }
    }

    pub fn set_connect_timeout(&self, t: Duration) {
        self.shared
            .connect_timeout_ms
            .store(t.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.shared.connect_timeout_ms.load(Ordering::Relaxed))
    }

    /// New HTTP/2 connections from now on (streams in flight finish on
    /// the old ones, which close after them).
    pub fn renew_h2(&self) {
        self.h2.clear();
    }

    /// Connections open now, idle or busy (HTTP/2 ones, for a pool that
    /// speaks it: its places under the cap are streams).
    pub fn open(&self) -> usize {
        match self.h2.connections() {
            0 => self.shared.open.load(Ordering::Relaxed),
            n => n,
        }
    }

    /// Requests waiting for a connection now.
    pub fn waiting(&self) -> usize {
        self.shared.waiting.load(Ordering::Relaxed)
    }

    /// New connections made since the backend entered the config.
    pub fn opened(&self) -> u64 {
        self.shared.opened.load(Ordering::Relaxed)
    }

    /// Idle connections now, on every worker.
    pub fn idle(&self) -> usize {
        self.shared
            .idle
            .iter()
            .map(|l| l.lock().map(|l| l.conns.len()).unwrap_or(0))
            .sum()
    }

    /// A connection to `addr`: this worker's most recently used idle one
    /// (unless `fresh`), or a new one while fewer than `max` are open, or,
    /// at the cap, the first to come free within `queue_timeout`. The bool
    /// says whether it was pooled.
    pub async fn get(
        &self,
        addr: SocketAddr,
        tls: Option<TlsTarget<'_>>,
        fresh: bool,
        max: usize,
        queue_timeout: Duration,
    ) -> Result<(Conn, bool), GetError> {
        let want_tls = tls.is_some();
        let mut deadline = None;
        let mut waiting = None;
        loop {
            let freed = self.shared.freed.notified();
            tokio::pin!(freed);
            // Registered before looking, so a connection freed meanwhile
            // is not missed.
            freed.as_mut().enable();
            if !fresh {
                if let Some(c) = self.checkout(addr, want_tls) {
                    return Ok((c, true));
                }
            }
            if let Some(slot) = self.reserve(max) {
                return self.connect(addr, slot, tls).await.map(|c| (c, false));
            }
            // At the cap: a connection idle on another worker serves
            // (driven from here while its own worker's reactor reports on
            // it); one to an old address makes room when closed.
            if let Some(c) = self.steal(addr, want_tls) {
                return Ok((c, true));
            }
            if self.close_one_idle() {
                continue;
            }
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + queue_timeout);
            waiting.get_or_insert_with(|| Waiting::new(&self.shared));
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(GetError::Queue);
            }
        }
    }

    /// A stream on one of the backend's HTTP/2 connections, with a place
    /// under the cap: for an HTTP/2 pool `max_connections` bounds the
    /// streams in flight (as HAProxy's maxconn bounds requests), waited for
    /// up to `queue_timeout` like connections.
    pub async fn stream(
        &self,
        addr: SocketAddr,
        tls: Option<TlsTarget<'_>>,
        fresh: bool,
        max: usize,
        queue_timeout: Duration,
    ) -> Result<(Permit, super::h2::StreamSlot), GetError> {
        let deadline = Instant::now() + queue_timeout;
        let mut waiting = None;
        let slot = loop {
            let freed = self.shared.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(slot) = self.reserve(max) {
                break slot;
            }
            waiting.get_or_insert_with(|| Waiting::new(&self.shared));
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(GetError::Queue);
            }
        };
        let (timeout, opened) = (self.connect_timeout(), &self.shared.opened);
        match self.h2.stream(addr, tls, fresh, timeout, opened).await {
            Ok(s) => Ok((Permit(slot), s)),
            Err(e) => Err(GetError::Connect(e)),
        }
    }

    /// Takes a place under the cap, if there is one.
    fn reserve(&self, max: usize) -> Option<Slot> {
        let open = &self.shared.open;
        let mut n = open.load(Ordering::Relaxed);
        loop {
            if n >= max {
                return None;
            }
            match open.compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some(Slot(Arc::downgrade(&self.shared))),
                Err(now) => n = now,
            }
        }
    }

    async fn connect(
        &self,
        addr: SocketAddr,
        slot: Slot,
        tls: Option<TlsTarget<'_>>,
    ) -> Result<Conn, GetError> {
        // The TLS handshake is part of connecting: connect_timeout covers both.
        let stream = tokio::time::timeout(self.connect_timeout(), UpStream::connect(addr, tls))
            .await
            .map_err(|_| {
                GetError::Connect(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
            })?
            .map_err(GetError::Connect)?;
        self.shared.opened.fetch_add(1, Ordering::Relaxed);
        Ok(Conn {
            stream,
            slot,
            reusable: true,
        })
    }

    /// A new connection outside the pool and its cap (health checks).
    pub async fn probe_connect(
        &self,
        addr: SocketAddr,
        tls: Option<TlsTarget<'_>>,
    ) -> io::Result<UpStream> {
        tokio::time::timeout(self.connect_timeout(), UpStream::connect(addr, tls))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))?
    }

    /// This worker's most recently used live connection to `addr`: the
    /// warmest, and the one least likely to have been closed by the backend.
    fn checkout(&self, addr: SocketAddr, tls: bool) -> Option<Conn> {
        let list = &self.shared.idle[worker() % self.shared.idle.len()];
        let mut list = list.lock().ok()?;
        let now = Instant::now();
        while let Some(idle) = list.conns.pop() {
            if idle.addr == addr
                && idle.stream.is_tls() == tls
                && fresh(&idle, now)
                && idle.stream.alive()
            {
                return Some(Conn {
                    stream: idle.stream,
                    slot: idle.slot,
                    reusable: true,
                });
            }
        }
        None
    }

    /// A live idle connection to `addr` from another worker's list.
    fn steal(&self, addr: SocketAddr, tls: bool) -> Option<Conn> {
        let n = self.shared.idle.len();
        let me = worker() % n;
        let now = Instant::now();
        (1..n).map(|k| (me + k) % n).find_map(|i| {
            let mut list = self.shared.idle[i].lock().ok()?;
            let at = list
                .conns
                .iter()
                .rposition(|idle| idle.addr == addr && idle.stream.is_tls() == tls)?;
            let idle = list.conns.remove(at);
            (fresh(&idle, now) && idle.stream.alive()).then_some(Conn {
                stream: idle.stream,
                slot: idle.slot,
                reusable: true,
            })
        })
    }

    /// Closes one idle connection (another worker's first), to free a
    /// place under the cap.
    fn close_one_idle(&self) -> bool {
        let me = worker() % self.shared.idle.len();
        let n = self.shared.idle.len();
        (1..=n).map(|k| (me + k) % n).any(|i| {
            let taken = self.shared.idle[i]
                .lock()
                .ok()
                .and_then(|mut l| l.conns.pop());
            taken.is_some()
        })
    }

    /// Puts a connection whose last exchange ended cleanly back.
    pub fn release(&self, conn: Conn, addr: SocketAddr) {
        if !conn.reusable {
            return;
        }
        let list = &self.shared.idle[worker() % self.shared.idle.len()];
        let Ok(mut l) = list.lock() else {
            return;
        };
        if l.conns.len() >= MAX_IDLE {
            return;
        }
        l.conns.push(Idle {
            stream: conn.stream,
            slot: conn.slot,
            addr,
            since: Instant::now(),
        });
        // Idle connections past their time are closed by a reaper, which
        // runs while the list is not empty. Outside a runtime (shutdown)
        // there is nothing to reap for.
        if !l.reaping {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                l.reaping = true;
                rt.spawn(reap(Arc::downgrade(&self.shared), worker()));
            }
        }
        drop(l);
        self.shared.freed.notify_one();
    }
}

/// Counts a request waiting for a connection while it lives.
struct Waiting(Arc<Shared>);

impl Waiting {
    fn new(shared: &Arc<Shared>) -> Waiting {
        shared.waiting.fetch_add(1, Ordering::AcqRel);
        Waiting(shared.clone())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

fn fresh(idle: &Idle, now: Instant) -> bool {
    now.saturating_duration_since(idle.since) < IDLE_TIMEOUT
}

async fn reap(shared: Weak<Shared>, worker: usize) {
    loop {
        tokio::time::sleep(IDLE_TIMEOUT / 2).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let list = &shared.idle[worker % shared.idle.len()];
        let Ok(mut list) = list.lock() else {
            return;
        };
        let now = Instant::now();
        list.conns
            .retain(|idle| fresh(idle, now) && idle.stream.alive());
        if list.conns.is_empty() {
            list.reaping = false;
            return;
        }
    }
}

#[cfg(test)]
#[path = "conns_tests.rs"]
mod tests;
