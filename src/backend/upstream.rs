//! The connection pool to one backend: hyper's low-level HTTP/1 client
//! connections, kept idle in a LIFO list after their response ended.
//!
//! sluice used hyper-util's pooled client until the profile showed its cost
//! per request: a pool keyed by hashed (scheme, authority), a checkout
//! future, and a task spawned per response only to learn when the
//! connection is idle again. A proxy knows that moment itself: the response
//! body it forwards has ended. So the response body hands its `Pooled`
//! connection back then (see `proxy::body`), and a checkout is one short
//! uncontended lock.
//!
//! One pool per backend keeps locks per backend and lets a reload carry a
//! backend's pooled connections over with the rest of its state. The connect
//! timeout lives in an atomic that a reload retunes.

use crate::proxy::body::RequestBody;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long an idle pooled connection is kept. Shorter than the usual backend
/// keep-alive timeouts (nginx 75 s, Node 5 s is the outlier), so sluice
/// rarely reuses a connection the backend is about to close.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// Idle connections kept per backend; more are closed when they come back.
const MAX_IDLE: usize = 128;

/// The read buffer for a backend connection, which bounds a response head.
pub const RESPONSE_HEAD_LIMIT: usize = 128 * 1024;

type Sender = http1::SendRequest<RequestBody>;

/// Why a request got no response from the backend.
#[derive(Debug)]
pub enum UpstreamError {
    /// No connection could be made (refused, unreachable, timed out).
    Connect(io::Error),
    /// The connection broke, or the backend's answer was not HTTP.
    Http(hyper::Error),
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Connect(e) => write!(f, "connect: {e}"),
            UpstreamError::Http(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for UpstreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UpstreamError::Connect(e) => Some(e),
            UpstreamError::Http(e) => Some(e),
        }
    }
}

struct Idle {
    sender: Sender,
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
pub struct Upstream {
    shared: Arc<Shared>,
}

/// A connection out of the pool, carried by the response body until the
/// response has ended. `release` puts it back; dropping it closes it (a
/// response that did not end leaves the connection in an unknown state).
pub struct Pooled {
    sender: Sender,
    addr: SocketAddr,
    shared: Weak<Shared>,
}

impl Pooled {
    pub fn release(self) {
        if let Some(shared) = self.shared.upgrade() {
            put(&shared, self.sender, self.addr);
        }
    }
}

impl Upstream {
    pub fn new(connect_timeout: Duration) -> Upstream {
        Upstream {
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

    /// Sends `req` (origin-form URI) to `addr` on a pooled connection, or a
    /// new one. A pooled connection the backend closed meanwhile hands the
    /// unsent request back, and the next connection gets it: nothing is
    /// replayed that was written.
    pub async fn send(
        &self,
        addr: SocketAddr,
        mut req: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, Pooled), UpstreamError> {
        while let Some(mut sender) = self.checkout(addr) {
            // A connection comes back as its response body ends; hyper's
            // connection task may not have turned idle yet.
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok((resp, self.pooled(sender, addr))),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(UpstreamError::Http(e.into_error())),
                },
            }
        }
        let mut sender = self.connect(addr).await?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(UpstreamError::Http)?;
        Ok((resp, self.pooled(sender, addr)))
    }

    /// Sends `req` on a new connection that is closed after it: health
    /// checks test that the backend accepts connections, and leave the
    /// pool to requests.
    pub async fn probe(
        &self,
        addr: SocketAddr,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut sender = self.connect(addr).await?;
        sender.send_request(req).await.map_err(UpstreamError::Http)
    }

    fn pooled(&self, sender: Sender, addr: SocketAddr) -> Pooled {
        Pooled {
            sender,
            addr,
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// The most recently used live connection to `addr`: the warmest, and
    /// the one least likely to have been closed by the backend.
    fn checkout(&self, addr: SocketAddr) -> Option<Sender> {
        let mut list = self.shared.idle.lock().ok()?;
        let now = Instant::now();
        while let Some(idle) = list.conns.pop() {
            if idle.addr == addr && !idle.sender.is_closed() && fresh(&idle, now) {
                return Some(idle.sender);
            }
        }
        None
    }

    async fn connect(&self, addr: SocketAddr) -> Result<Sender, UpstreamError> {
        let timeout = Duration::from_millis(self.shared.connect_timeout_ms.load(Ordering::Relaxed));
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                UpstreamError::Connect(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
            })?
            .map_err(UpstreamError::Connect)?;
        stream.set_nodelay(true).map_err(UpstreamError::Connect)?;
        let (sender, conn) = http1::Builder::new()
            // A backend's response head is bounded: a broken or hostile
            // backend cannot make sluice buffer more than this per response
            // head (hyper's default is about 400 KiB). Larger heads are 502.
            .max_buf_size(RESPONSE_HEAD_LIMIT)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Http)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(backend = %addr, error = %e, "backend connection ended");
            }
        });
        Ok(sender)
    }
}

fn fresh(idle: &Idle, now: Instant) -> bool {
    now.saturating_duration_since(idle.since) < POOL_IDLE_TIMEOUT
}

fn put(shared: &Arc<Shared>, sender: Sender, addr: SocketAddr) {
    if sender.is_closed() {
        return;
    }
    let Ok(mut list) = shared.idle.lock() else {
        return;
    };
    if list.conns.len() >= MAX_IDLE {
        return;
    }
    list.conns.push(Idle {
        sender,
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
        tokio::time::sleep(POOL_IDLE_TIMEOUT / 2).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let Ok(mut list) = shared.idle.lock() else {
            return;
        };
        let now = Instant::now();
        list.conns
            .retain(|idle| !idle.sender.is_closed() && fresh(idle, now));
        if list.conns.is_empty() {
            list.reaping = false;
            return;
        }
    }
}
