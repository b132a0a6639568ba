//! HTTP/2 connections to one backend (`protocol = "h2"` or `"h2c"`): one
//! multiplexed connection carries the requests, and another is opened only
//! when every open one has as many streams as the backend allows
//! (SETTINGS_MAX_CONCURRENT_STREAMS). A connection the backend closes
//! (GOAWAY, or the socket) is no longer picked; its open streams finish on
//! it, as HTTP/2 wants.
//!
//! The `h2` crate (hyper's own HTTP/2) is used directly rather than
//! hyper's client: sluice needs the peer's stream limit to know when to
//! open another connection, which hyper does not expose.

use super::stream::{TlsTarget, UpStream};
use bytes::Bytes;
use h2::client::SendRequest;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// An extra connection (beyond the first) with no stream for this long is
/// closed: a burst that needed more streams than one connection allows
/// leaves no connections behind it.
const EXTRA_IDLE: Duration = Duration::from_secs(30);

/// Streams a new connection is assumed to take until the backend's
/// SETTINGS say (they are waited for; RFC 9113 recommends at least 100).
const INITIAL_MAX_STREAMS: usize = 100;

struct Connection {
    send: SendRequest<Bytes>,
    addr: SocketAddr,
    /// Streams sluice has open on it.
    streams: Arc<AtomicUsize>,
    /// The connection ended (its task returned): never picked again.
    closed: Arc<AtomicBool>,
    idle_since: Mutex<Instant>,
}

/// A backend's HTTP/2 connections.
#[derive(Default)]
pub struct H2Conns {
    list: Mutex<Vec<Arc<Connection>>>,
    /// One new connection at a time: requests that find every connection
    /// full wait for the one being opened instead of each opening its own.
    /// It holds when the last dial failed, and how.
    dialing: tokio::sync::Mutex<Option<(Instant, io::ErrorKind)>>,
}

/// A place for one stream on a connection: the handle to open it with,
/// and the count it holds until dropped.
pub struct StreamSlot {
    pub send: SendRequest<Bytes>,
    /// The connection was open before this request (its failure before any
    /// answer may be the backend closing it, not the backend failing).
    pub reused: bool,
    held: Arc<AtomicUsize>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.held.fetch_sub(1, Ordering::AcqRel);
    }
}

impl H2Conns {
    /// HTTP/2 connections open now.
    pub fn connections(&self) -> usize {
        self.list.lock().map_or(0, |l| {
            l.iter()
                .filter(|c| !c.closed.load(Ordering::Relaxed))
                .count()
        })
    }

    /// Lets every connection go: open streams keep theirs alive until they
    /// end, then it closes.
    pub fn clear(&self) {
        if let Ok(mut l) = self.list.lock() {
            l.clear();
        }
    }

    /// A stream to `addr`: on an open connection with room for one, else on
    /// a new connection (`fresh` forces one).
    pub async fn stream(
        &self,
        addr: SocketAddr,
        tls: Option<TlsTarget<'_>>,
        fresh: bool,
        connect_timeout: Duration,
        opened: &AtomicU64,
    ) -> io::Result<StreamSlot> {
        if !fresh {
            if let Some(s) = self.pick(addr) {
                return Ok(s);
            }
        }
        let asked = Instant::now();
        let mut dialing = self.dialing.lock().await;
        if !fresh {
            if let Some(s) = self.pick(addr) {
                return Ok(s);
            }
        }
        // A dial that failed while this request waited for it fails this
        // request too (it goes to another backend), rather than every
        // waiting request trying the dead backend in turn.
        if let Some((when, kind)) = *dialing {
            if when >= asked {
                return Err(io::Error::new(kind, "connecting to the backend failed"));
            }
        }
        let dialed = tokio::time::timeout(connect_timeout, connect(addr, tls))
            .await
            .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")));
        *dialing = dialed.as_ref().err().map(|e| (Instant::now(), e.kind()));
        let conn = dialed?;
        opened.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(conn);
        conn.streams.fetch_add(1, Ordering::AcqRel);
        let slot = StreamSlot {
            send: conn.send.clone(),
            reused: false,
            held: conn.streams.clone(),
        };
        if let Ok(mut l) = self.list.lock() {
            l.push(conn);
        }
        Ok(slot)
    }

    /// The first open connection to `addr` below its stream limit; idle
    /// extra connections and closed ones are let go on the way.
    fn pick(&self, addr: SocketAddr) -> Option<StreamSlot> {
        let mut list = self.list.lock().ok()?;
        let now = Instant::now();
        let mut first = true;
        list.retain(|c| {
            if c.closed.load(Ordering::Acquire) || c.addr != addr {
                return false;
            }
            let keep = first
                || c.streams.load(Ordering::Acquire) > 0
                || c.idle_since
                    .lock()
                    .map_or(true, |t| now.saturating_duration_since(*t) < EXTRA_IDLE);
            first = false;
            keep
        });
        list.iter().find_map(|c| {
            let limit = c.send.current_max_send_streams();
            let n = c.streams.load(Ordering::Acquire);
            if n >= limit {
                return None;
            }
            c.streams.fetch_add(1, Ordering::AcqRel);
            if let Ok(mut t) = c.idle_since.lock() {
                *t = now;
            }
            Some(StreamSlot {
                send: c.send.clone(),
                reused: true,
                held: c.streams.clone(),
            })
        })
    }
}

/// Client settings towards backends: flow-control windows as the listener
/// side gives clients (1 MiB a stream, 4 MiB a connection), which bound
/// what a backend can make sluice buffer.
fn builder() -> h2::client::Builder {
    let mut b = h2::client::Builder::new();
    b.initial_window_size(1 << 20)
        .initial_connection_window_size(4 << 20)
        .initial_max_send_streams(INITIAL_MAX_STREAMS)
        .max_send_buffer_size(1 << 20)
        .max_header_list_size(256 << 10)
        .enable_push(false);
    b
}

/// Connects (TCP, TLS when the pool has it) and checks that TLS agreed on
/// h2 by ALPN.
async fn open(addr: SocketAddr, tls: Option<TlsTarget<'_>>) -> io::Result<UpStream> {
    let stream = UpStream::connect(addr, tls).await?;
    agreed(&stream)?;
    Ok(stream)
}

/// A TLS backend of an h2 pool must have agreed to h2 by ALPN.
fn agreed(stream: &UpStream) -> io::Result<()> {
    if stream.is_tls() && stream.alpn() != Some(b"h2") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the backend did not agree to HTTP/2 (ALPN h2)",
        ));
    }
    Ok(())
}

async fn connect(addr: SocketAddr, tls: Option<TlsTarget<'_>>) -> io::Result<Connection> {
    let stream = open(addr, tls).await?;
    let (send, mut conn) = builder()
        .handshake::<_, Bytes>(stream)
        .await
        .map_err(io::Error::other)?;
    let mut ping = conn.ping_pong();
    let closed = Arc::new(AtomicBool::new(false));
    let ended = closed.clone();
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(backend = %addr, error = %e, "HTTP/2 connection to the backend ended");
        }
        ended.store(true, Ordering::Release);
    });
    // The backend's SETTINGS come before its answer to a PING: once the
    // PONG is in, its stream limit is known (not assumed), and the backend
    // is known to speak HTTP/2 at all.
    if let Some(p) = ping.as_mut() {
        p.ping(h2::Ping::opaque())
            .await
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    }
    Ok(Connection {
        send,
        addr,
        streams: Arc::new(AtomicUsize::new(0)),
        closed,
        idle_since: Mutex::new(Instant::now()),
    })
}

/// A health check over HTTP/2 on a new connection `stream`: `GET path`
/// with this authority; the response's status.
pub async fn probe(stream: UpStream, scheme: &str, authority: &str, path: &str) -> io::Result<u16> {
    agreed(&stream)?;
    let (send, conn) = builder()
        .handshake::<_, Bytes>(stream)
        .await
        .map_err(io::Error::other)?;
    let uri = format!("{scheme}://{authority}{path}");
    let req = http::Request::get(uri)
        .header("user-agent", "sluice-health-check")
        .body(())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let asked = async move {
        let mut send = send.ready().await.map_err(io::Error::other)?;
        let (resp, _) = send.send_request(req, true).map_err(io::Error::other)?;
        let resp = resp.await.map_err(io::Error::other)?;
        Ok::<u16, io::Error>(resp.status().as_u16())
    };
    // The connection is driven while the check waits; dropped after it
    // (GOAWAY), as an HTTP/1 check closes its connection.
    tokio::select! {
        status = asked => status,
        ended = conn => Err(match ended {
            Ok(()) => io::ErrorKind::UnexpectedEof.into(),
            Err(e) => io::Error::other(e),
        }),
    }
}
