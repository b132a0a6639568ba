//! The pool of connections to one backend: plain sockets, kept idle in a
//! LIFO list between requests. The HTTP/1 engine checks one out, drives it
//! itself for the length of an exchange (no connection task, no channel)
//! and gives it back when the response has ended cleanly.
//!
//! A pooled socket is nobody's to read while it idles, so a backend that
//! closed it is noticed at checkout: tokio records readiness as epoll
//! reports it, and an idle socket that became readable has either been
//! closed (end of input) or sent bytes nobody asked for; both are dropped
//! (Pingora checks the same way, with a one-byte read). The check costs a
//! system call only when readiness was reported.
//!
//! One pool per backend keeps locks per backend and lets a reload carry a
//! backend's pooled connections over with the rest of its state. The
//! connect timeout lives in an atomic that a reload retunes.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long an idle pooled connection is kept. Shorter than the usual
/// backend keep-alive timeouts (nginx 75 s, Node 5 s is the outlier), so
/// sluice rarely reuses a connection the backend is about to close.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// Idle connections kept per backend; more are closed when they come back.
const MAX_IDLE: usize = 128;

struct Idle {
    stream: TcpStream,
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
    idle: Mutex<IdleList>,
    connect_timeout_ms: AtomicU64,
}

/// A backend's connection pool and its retunable connect timeout.
pub struct Conns {
    shared: Arc<Shared>,
}

impl Conns {
    pub fn new(connect_timeout: Duration) -> Conns {
        Conns {
            shared: Arc::new(Shared {
                idle: Mutex::new(IdleList::default()),
                connect_timeout_ms: AtomicU64::new(connect_timeout.as_millis() as u64),
            }),
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

    /// The most recently used live connection to `addr`: the warmest, and
    /// the one least likely to have been closed by the backend.
    pub fn checkout(&self, addr: SocketAddr) -> Option<TcpStream> {
        let mut list = self.shared.idle.lock().ok()?;
        let now = Instant::now();
        while let Some(idle) = list.conns.pop() {
            if idle.addr == addr && fresh(&idle, now) && alive(&idle.stream) {
                return Some(idle.stream);
            }
        }
        None
    }

    /// A new connection to `addr`, within the connect timeout.
    pub async fn connect(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        let stream = tokio::time::timeout(self.connect_timeout(), TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        // Small requests must not wait for Nagle.
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Puts a connection whose last response ended cleanly back.
    pub fn release(&self, stream: TcpStream, addr: SocketAddr) {
        put(&self.shared, stream, addr);
    }

    /// Idle connections now (for tests and the status page).
    pub fn idle(&self) -> usize {
        self.shared.idle.lock().map(|l| l.conns.len()).unwrap_or(0)
    }
}

fn fresh(idle: &Idle, now: Instant) -> bool {
    now.saturating_duration_since(idle.since) < IDLE_TIMEOUT
}

/// Whether an idle socket is still usable: no readiness reported since it
/// was last read empty, or a read finds nothing.
fn alive(stream: &TcpStream) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    match stream.poll_read_ready(&mut cx) {
        Poll::Pending => true,
        Poll::Ready(Err(_)) => false,
        Poll::Ready(Ok(())) => matches!(
            stream.try_read(&mut [0u8; 1]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        ),
    }
}

fn put(shared: &Arc<Shared>, stream: TcpStream, addr: SocketAddr) {
    let Ok(mut list) = shared.idle.lock() else {
        return;
    };
    if list.conns.len() >= MAX_IDLE {
        return;
    }
    list.conns.push(Idle {
        stream,
        addr,
        since: Instant::now(),
    });
    // Idle connections past their time are closed by a reaper, which runs
    // while the list is not empty. Outside a runtime (shutdown) there is
    // nothing to reap for.
    if !list.reaping {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            list.reaping = true;
            rt.spawn(reap(Arc::downgrade(shared)));
        }
    }
}

async fn reap(shared: Weak<Shared>) {
    loop {
        tokio::time::sleep(IDLE_TIMEOUT / 2).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let Ok(mut list) = shared.idle.lock() else {
            return;
        };
        let now = Instant::now();
        list.conns
            .retain(|idle| fresh(idle, now) && alive(&idle.stream));
        if list.conns.is_empty() {
            list.reaping = false;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_closed_idle_connection_is_not_checked_out() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let conns = Conns::new(Duration::from_secs(1));
        let a = conns.connect(addr).await.unwrap();
        let (mut server_a, _) = l.accept().await.unwrap();
        let b = conns.connect(addr).await.unwrap();
        let (server_b, _) = l.accept().await.unwrap();
        conns.release(a, addr);
        conns.release(b, addr);
        // b (the newest) is closed by the server; a sent stray bytes.
        drop(server_b);
        server_a.write_all(b"x").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(conns.checkout(addr).is_none());
        assert_eq!(conns.idle(), 0);
        // A live one is.
        let c = conns.connect(addr).await.unwrap();
        let (_server_c, _) = l.accept().await.unwrap();
        conns.release(c, addr);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(conns.checkout(addr).is_some());
    }
}
