//! The client connection's byte stream, under hyper. For HTTP/1 it is a
//! framing layer: it follows every request on the raw bytes, holds each
//! request head back until it is complete and checked (`framing`), follows
//! the body to find where the next head starts, and enforces the listener's
//! limits on what the client controls.
//!
//! - A head that is malformed, ambiguous or too large never reaches hyper.
//!   In its place hyper gets a small synthetic request that sluice's own
//!   handler answers with the status (400, 408, 414, 431) and
//!   `Connection: close`. Going through hyper keeps the answers in order on
//!   a pipelined connection. The rejected head and everything after it are
//!   discarded, so nothing of a rejected request reaches a backend.
//! - A chunked body with a framing error: when the error arrives in the
//!   same read as its head, the head is withdrawn before hyper sees it and
//!   the request is rejected whole. Later, the request is already on its way
//!   to a backend, so it is aborted. The client gets 400 and a close, and
//!   the backend's connection is discarded with the truncated request.
//! - `header_read_timeout`: from the first byte of a head (from accept for
//!   the first request) until its end; on expiry: 408 and close.
//! - `idle_timeout`: a keep-alive connection with no request in progress is
//!   closed after this long. A request body that stalls this long gets 408,
//!   and a response the client does not read for this long is abandoned.
//! - After a rejection, closing is lingering: sluice half-closes, then
//!   drains what the client still sends for a moment, so the client reads
//!   the answer instead of a reset.
//!
//! - Parking: a plaintext HTTP/1 connection idle for `PARK_AFTER` hands
//!   its socket back (`Parking`) and tells hyper the input ended; hyper ends
//!   the connection without closing the socket, and frees its read and write
//!   buffers (8 KiB each, at least). `serve` waits for the socket to become
//!   readable, with no buffers, then starts hyper on it again. This is how
//!   nginx keeps an idle keep-alive connection in well under 1 KiB.
//!
//! HTTP/2 (prior knowledge or ALPN) passes through; hyper's h2 enforces its
//! own framing. Only the idle timer applies.

use super::framing::{self, BodyKind, Chunked, Reject};
use super::ConnInfo;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How long, and how much, a rejected connection is drained before closing.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1 << 20;
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How long a keep-alive connection idles before it is parked. Long enough
/// that a busy connection (a next request within a round trip or two) keeps
/// its hyper state, short enough that thousands of idle connections hold
/// almost nothing.
pub const PARK_AFTER: Duration = Duration::from_millis(10);

/// Where a parked connection's stream is handed back to `serve`: written
/// once when the connection parks, read once when hyper has let go of it.
pub struct Parking<T> {
    slot: std::sync::Mutex<Option<Parked<T>>>,
}

pub struct Parked<T> {
    pub stream: T,
    /// Since when the connection is idle: the idle timeout counts on.
    pub idle_since: Instant,
}

impl<T> Default for Parking<T> {
    fn default() -> Self {
        Parking {
            slot: std::sync::Mutex::new(None),
        }
    }
}

impl<T> Parking<T> {
    pub fn take(&self) -> Option<Parked<T>> {
        self.slot.lock().ok().and_then(|mut s| s.take())
    }

    fn put(&self, parked: Parked<T>) {
        if let Ok(mut s) = self.slot.lock() {
            *s = Some(parked);
        }
    }
}

/// The request hyper is given in place of a rejected one; the handler knows
/// it by this path together with the connection's rejection.
pub const REJECTED_PATH: &str = "/.sluice/rejected";
const SYNTHETIC: &[u8] = b"GET /.sluice/rejected HTTP/1.1\r\nhost: sluice.invalid\r\n\r\n";

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
}

enum Framing {
    /// Collecting a head: its bytes so far, the CRLFCRLF scanner's
    /// progress, whether the last byte was CR, and when its first byte came.
    Head {
        held: Vec<u8>,
        progress: u8,
        cr: bool,
        since: Option<Instant>,
    },
    /// A body of this many more bytes.
    Length(u64),
    Chunked(Box<Chunked>),
    /// After an upgrade request: later bytes wait in `stash` until the
    /// request either switches protocols or ends.
    AwaitUpgrade {
        stash: Vec<u8>,
    },
    /// HTTP/2, or a switched (WebSocket) connection: no checks.
    Raw,
    /// Rejected: what the client sends is discarded.
    Rejected,
    /// A body framing error after its head went to hyper.
    Failed(io::ErrorKind),
}

impl Framing {
    fn head() -> Framing {
        Framing::Head {
            held: Vec::new(),
            progress: 0,
            cr: false,
            since: None,
        }
    }
}

/// What the read timer is counting, if anything.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Timer {
    None,
    Head(Instant),
    Idle(Instant),
    /// Idle, and parked at this instant (see `Parking`).
    Park(Instant),
    Body(Instant),
}

enum Linger {
    No,
    Draining { until: Instant, drained: usize },
    Done,
}

pub struct ConnIo<T> {
    /// The client's stream; None once parked.
    inner: Option<T>,
    parking: Option<Arc<Parking<T>>>,
    info: Arc<ConnInfo>,
    limits: Limits,
    framing: Framing,
    /// Checked bytes waiting to be handed to hyper.
    pending: Vec<u8>,
    pending_pos: usize,
    /// Where in `pending` the last head released starts, while nothing of
    /// it has been handed over: a body error can still withdraw it.
    withdrawable: Option<usize>,
    /// No head finished yet on this connection.
    first: bool,
    h2: bool,
    accepted: Instant,
    /// The idle epoch last seen, and since when the connection is idle.
    epoch: u64,
    idle_since: Instant,
    /// A head was handed over and its request has not ended yet (the idle
    /// epoch has not moved past `request_epoch`).
    in_request: bool,
    request_epoch: u64,
    timer: Pin<Box<Sleep>>,
    armed: Timer,
    write_timer: Pin<Box<Sleep>>,
    write_armed: bool,
    linger: Linger,
}

impl<T> ConnIo<T> {
    pub fn new(inner: T, info: Arc<ConnInfo>, limits: Limits, h2: bool) -> ConnIo<T> {
        let now = Instant::now();
        ConnIo {
            inner: Some(inner),
            parking: None,
            info,
            limits,
            framing: if h2 { Framing::Raw } else { Framing::head() },
            pending: Vec::new(),
            pending_pos: 0,
            withdrawable: None,
            first: true,
            h2,
            accepted: now,
            epoch: 0,
            idle_since: now,
            in_request: false,
            request_epoch: 0,
            timer: Box::pin(tokio::time::sleep_until(now + limits.header_read_timeout)),
            armed: Timer::None,
            write_timer: Box::pin(tokio::time::sleep_until(now)),
            write_armed: false,
            linger: Linger::No,
        }
    }

    /// Lets this (plaintext HTTP/1) connection park when idle. `resumed`:
    /// since when it was idle if it was parked before.
    pub fn with_parking(mut self, parking: Arc<Parking<T>>, resumed: Option<Instant>) -> Self {
        // Only an idle HTTP/1 connection parks (see `wanted_timer`).
        self.parking = Some(parking);
        if let Some(since) = resumed {
            self.first = false;
            self.idle_since = since;
            self.epoch = self.info.idle_epoch();
            self.request_epoch = self.epoch;
        }
        self
    }

    /// Hands the stream back to `serve`; hyper sees the input end.
    fn park(&mut self) {
        if let (Some(parking), Some(stream)) = (self.parking.as_ref(), self.inner.take()) {
            parking.put(Parked {
                stream,
                idle_since: self.idle_since,
            });
        }
    }

    /// Replaces what is left of the input with the synthetic request and
    /// records why, for the handler.
    fn reject(&mut self, r: Reject) {
        self.info.set_rejection(r);
        self.pending.extend_from_slice(SYNTHETIC);
        self.framing = Framing::Rejected;
        self.withdrawable = None;
    }

    /// A body framing error: withdraw the request if hyper has not seen it,
    /// else fail the stream so the request in flight is aborted.
    fn body_error(&mut self, r: Reject, kind: io::ErrorKind) {
        match self.withdrawable.take() {
            Some(start) => {
                self.pending.truncate(start);
                self.reject(r);
            }
            None => {
                self.info.set_rejection(r);
                self.framing = Framing::Failed(kind);
            }
        }
    }

    /// Runs `input` through the framing, appending what hyper may see to
    /// `pending`.
    fn process(&mut self, input: &[u8]) {
        let mut i = 0;
        while i < input.len() {
            let rest = &input[i..];
            match self.advance_body(rest) {
                Some(Ok(k)) => {
                    self.pending.extend_from_slice(&rest[..k]);
                    i += k;
                    continue;
                }
                Some(Err(r)) => {
                    self.body_error(r, io::ErrorKind::InvalidData);
                    return;
                }
                None => {}
            }
            match &mut self.framing {
                Framing::Head { .. } => match self.take_head(rest) {
                    Ok(k) => i += k,
                    Err(r) => {
                        self.reject(r);
                        return;
                    }
                },
                Framing::AwaitUpgrade { stash } => {
                    stash.extend_from_slice(rest);
                    return;
                }
                Framing::Raw => {
                    self.pending.extend_from_slice(rest);
                    return;
                }
                // Bodies were stepped over above.
                Framing::Length(_)
                | Framing::Chunked(_)
                | Framing::Rejected
                | Framing::Failed(_) => return,
            }
        }
    }

    /// Steps the body being followed over `bytes`: `Some(Ok(k))` when the
    /// first `k` belong to it (at its end the framing moves on to the next
    /// head), `Some(Err)` on a chunked framing error, None when no body is
    /// being followed. The parser's state moves either way.
    fn advance_body(&mut self, bytes: &[u8]) -> Option<Result<usize, Reject>> {
        let (k, done) = match &mut self.framing {
            Framing::Length(left) => {
                let k = bytes
                    .len()
                    .min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= k as u64;
                (k, *left == 0)
            }
            Framing::Chunked(c) => match c.advance(bytes) {
                Ok(step) => step,
                Err(r) => return Some(Err(r)),
            },
            _ => return None,
        };
        if done {
            self.framing = Framing::head();
        }
        Some(Ok(k))
    }

    /// Feeds bytes to the head being collected; returns how many it took.
    fn take_head(&mut self, rest: &[u8]) -> Result<usize, Reject> {
        let Framing::Head {
            held,
            progress,
            cr,
            since,
        } = &mut self.framing
        else {
            return Ok(0);
        };
        if since.is_none() {
            *since = Some(Instant::now());
        }
        let mut end = None;
        for (k, &b) in rest.iter().enumerate() {
            if b == b'\n' && !*cr {
                return Err(Reject {
                    status: 400,
                    reason: "bare LF line ending",
                });
            }
            *cr = b == b'\r';
            *progress = match (*progress, b) {
                (0 | 2, b'\r') => *progress + 1,
                (1 | 3, b'\n') => *progress + 1,
                (_, b'\r') => 1,
                _ => 0,
            };
            held.push(b);
            // Empty lines before a request line are ignored (RFC 9112
            // section 2.2).
            if *progress == 2 && held.len() == 2 {
                held.clear();
                *progress = 0;
                continue;
            }
            if held.len() > self.limits.max_header_bytes {
                return Err(Reject {
                    status: 431,
                    reason: "the request head is too large",
                });
            }
            if self.first && held.len() <= H2_PREFACE.len() && H2_PREFACE.starts_with(held) {
                if held.len() == H2_PREFACE.len() {
                    self.h2 = true;
                    self.first = false;
                    self.pending.append(held);
                    self.framing = Framing::Raw;
                    return Ok(k + 1);
                }
                continue;
            }
            if *progress == 4 {
                end = Some(k + 1);
                break;
            }
        }
        let Some(taken) = end else {
            return Ok(rest.len());
        };
        let head = framing::check_head(held)?;
        self.first = false;
        self.in_request = true;
        self.request_epoch = self.info.idle_epoch();
        self.withdrawable = Some(self.pending.len());
        self.pending.append(held);
        self.framing = match head.body {
            BodyKind::None if head.upgrade => Framing::AwaitUpgrade { stash: Vec::new() },
            BodyKind::None => Framing::head(),
            BodyKind::Length(n) => Framing::Length(n),
            BodyKind::Chunked => {
                Framing::Chunked(Box::new(Chunked::new(self.limits.max_header_bytes)))
            }
        };
        Ok(taken)
    }

    /// Hands pending bytes to hyper; true if any were.
    fn deliver(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        let left = &self.pending[self.pending_pos..];
        if left.is_empty() || buf.remaining() == 0 {
            return false;
        }
        let n = left.len().min(buf.remaining());
        buf.put_slice(&left[..n]);
        self.pending_pos += n;
        self.withdrawable = None;
        if self.pending_pos == self.pending.len() {
            self.pending.clear();
            self.pending_pos = 0;
        }
        true
    }

    /// Notices the end of the request in progress (idle epoch moved).
    fn refresh_idle(&mut self) {
        let epoch = self.info.idle_epoch();
        let busy = self.info.requests_in_progress() > 0;
        if epoch != self.epoch {
            self.epoch = epoch;
            if !busy {
                self.idle_since = Instant::now();
            }
        }
        if self.in_request && epoch != self.request_epoch && !busy {
            self.in_request = false;
            self.idle_since = Instant::now();
        }
    }

    /// Whether a request is under way (handed over and not ended).
    fn busy(&self) -> bool {
        self.in_request || self.info.requests_in_progress() > 0
    }

    /// What the read timer should count while the client sends nothing.
    fn wanted_timer(&self) -> Timer {
        match &self.framing {
            Framing::Head {
                held, since: None, ..
            } if held.is_empty() => {
                if self.first {
                    Timer::Head(self.accepted + self.limits.header_read_timeout)
                } else if !self.busy() {
                    let idle = self.idle_since + self.limits.idle_timeout;
                    let park = self.idle_since + PARK_AFTER;
                    // Never with a write under way: hyper may still hold
                    // bytes of the last answer.
                    if self.parking.is_some() && !self.write_armed && park < idle {
                        Timer::Park(park)
                    } else {
                        Timer::Idle(idle)
                    }
                } else {
                    Timer::None
                }
            }
            Framing::Head { since, .. } => {
                Timer::Head(since.unwrap_or(self.accepted) + self.limits.header_read_timeout)
            }
            Framing::Length(_) | Framing::Chunked(_) => match self.armed {
                // Counted from when sluice started waiting for the client.
                Timer::Body(at) => Timer::Body(at),
                _ => Timer::Body(Instant::now() + self.limits.idle_timeout),
            },
            Framing::Raw if self.h2 && !self.busy() => {
                Timer::Idle(self.idle_since + self.limits.idle_timeout)
            }
            _ => Timer::None,
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> ConnIo<T> {
    /// Reads and drops what the client sends: Ready(n) for n bytes dropped,
    /// Ready(0) at end of input or on an error.
    /// Reads from the client's stream. A parked connection's input has
    /// ended, as far as hyper knows.
    fn read_inner(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_read(cx, buf),
            None => Poll::Ready(Ok(())),
        }
    }

    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<usize> {
        let mut scratch = [0u8; 4096];
        let mut b = ReadBuf::new(&mut scratch);
        match ready!(self.read_inner(cx, &mut b)) {
            Ok(()) => Poll::Ready(b.filled().len()),
            Err(_) => Poll::Ready(0),
        }
    }

    /// Discards what a rejected client still sends. Never ready: hyper is
    /// woken by its own work (the rejection's answer).
    fn discard(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Poll::Ready(n) = self.drain(cx) {
            if n == 0 {
                break;
            }
        }
        Poll::Pending
    }

    /// On timer expiry: what to tell hyper, if anything.
    fn expire(&mut self, timer: Timer) -> Option<io::Result<()>> {
        match timer {
            Timer::Head(_) => {
                self.reject(Reject {
                    status: 408,
                    reason: "the request head did not arrive in time",
                });
                None
            }
            // An idle connection ends: hyper sees end of input and closes.
            Timer::Idle(_) => {
                self.framing = Framing::Rejected;
                Some(Ok(()))
            }
            // So does a parking one; `serve` keeps the socket.
            Timer::Park(_) => {
                self.park();
                Some(Ok(()))
            }
            Timer::Body(_) => {
                self.info.set_rejection(Reject {
                    status: 408,
                    reason: "the request body stalled",
                });
                self.framing = Framing::Failed(io::ErrorKind::TimedOut);
                Some(Err(io::ErrorKind::TimedOut.into()))
            }
            Timer::None => None,
        }
    }

    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match &self.linger {
                Linger::No => {
                    let until = Instant::now() + LINGER_TIME;
                    self.timer.as_mut().reset(until);
                    self.linger = Linger::Draining { until, drained: 0 };
                }
                Linger::Draining { until, drained } => {
                    let (until, so_far) = (*until, *drained);
                    match self.drain(cx) {
                        Poll::Ready(n) if n > 0 && so_far < LINGER_BYTES => {
                            self.linger = Linger::Draining {
                                until,
                                drained: so_far + n,
                            };
                        }
                        Poll::Pending if Instant::now() < until => {
                            if self.timer.as_mut().poll(cx).is_ready() {
                                self.linger = Linger::Done;
                            } else {
                                return Poll::Pending;
                            }
                        }
                        _ => self.linger = Linger::Done,
                    }
                }
                Linger::Done => return Poll::Ready(()),
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for ConnIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.deliver(buf) {
                return Poll::Ready(Ok(()));
            }
            if this.info.is_upgraded() {
                if let Framing::AwaitUpgrade { stash } = &mut this.framing {
                    // Bytes that came after the handshake are the tunnel's.
                    this.pending = std::mem::take(stash);
                    this.pending_pos = 0;
                    this.framing = Framing::Raw;
                    continue;
                }
                return this.read_inner(cx, buf);
            }
            this.refresh_idle();
            match &mut this.framing {
                Framing::Rejected => return this.discard(cx),
                Framing::Failed(kind) => return Poll::Ready(Err((*kind).into())),
                Framing::AwaitUpgrade { stash } => {
                    if !this.in_request {
                        // Answered without switching: HTTP goes on.
                        let stash = std::mem::take(stash);
                        this.framing = Framing::head();
                        this.process(&stash);
                        continue;
                    }
                    this.info.wake_when_idle(cx.waker());
                    // The request may have ended before the registration.
                    if this.info.idle_epoch() != this.request_epoch
                        && this.info.requests_in_progress() == 0
                        || this.info.is_upgraded()
                    {
                        continue;
                    }
                    return Poll::Pending;
                }
                _ => {}
            }
            let before = buf.filled().len();
            match this.read_inner(cx, buf) {
                Poll::Ready(Ok(())) => {
                    let n = buf.filled().len() - before;
                    if n == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    this.armed = Timer::None;
                    // Fast paths: body bytes (and HTTP/2) stay where they
                    // are, in hyper's buffer.
                    if let Framing::Raw = this.framing {
                        return Poll::Ready(Ok(()));
                    }
                    let kept = match this.advance_body(&buf.filled()[before..]) {
                        Some(Ok(k)) => k,
                        Some(Err(r)) => {
                            // The parser's state is past the error: hide
                            // these bytes from hyper and fail the body.
                            buf.set_filled(before);
                            this.body_error(r, io::ErrorKind::InvalidData);
                            continue;
                        }
                        None => 0,
                    };
                    if kept == n {
                        return Poll::Ready(Ok(()));
                    }
                    // The rest (a head, a next request, a chunk error) goes
                    // through the framing, out of hyper's sight for now.
                    let tail = buf.filled()[before + kept..].to_vec();
                    buf.set_filled(before + kept);
                    if kept > 0 {
                        this.withdrawable = None;
                    }
                    this.process(&tail);
                    if kept > 0 {
                        return Poll::Ready(Ok(()));
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    let want = this.wanted_timer();
                    if want != this.armed {
                        this.armed = want;
                        if let Timer::Head(at)
                        | Timer::Idle(at)
                        | Timer::Park(at)
                        | Timer::Body(at) = want
                        {
                            this.timer.as_mut().reset(at);
                        }
                    }
                    if want != Timer::None && this.timer.as_mut().poll(cx).is_ready() {
                        this.armed = Timer::None;
                        if let Some(result) = this.expire(want) {
                            return Poll::Ready(result);
                        }
                        continue;
                    }
                    if this.busy() {
                        // The idle timer starts when the request ends, and
                        // hyper may not poll the read side again by itself.
                        this.info.wake_when_idle(cx.waker());
                        let epoch = this.info.idle_epoch();
                        if epoch != this.epoch && this.info.requests_in_progress() == 0 {
                            cx.waker().wake_by_ref();
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> ConnIo<T> {
    /// A write the client does not take for idle_timeout fails, so a
    /// client that never reads cannot hold a connection (and a backend's)
    /// forever.
    fn write_progress<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match polled {
            Poll::Pending => {
                if !self.write_armed {
                    self.write_armed = true;
                    self.write_timer
                        .as_mut()
                        .reset(Instant::now() + self.limits.idle_timeout);
                }
                if self.write_timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
                }
                Poll::Pending
            }
            ready => {
                self.write_armed = false;
                ready
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ConnIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        let polled = Pin::new(inner).poll_write(cx, buf);
        this.write_progress(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        let polled = Pin::new(inner).poll_write_vectored(cx, bufs);
        this.write_progress(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let polled = Pin::new(inner).poll_flush(cx);
        this.write_progress(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Parked: the socket is not hyper's to close.
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        if matches!(this.linger, Linger::No) {
            // A failed shutdown only means the client is gone already.
            if ready!(Pin::new(inner).poll_shutdown(cx)).is_err() {
                this.linger = Linger::Done;
            }
        }
        if matches!(this.framing, Framing::Rejected | Framing::Failed(_))
            && this.info.has_rejection()
        {
            ready!(this.poll_linger(cx));
        }
        Poll::Ready(Ok(()))
    }
}
