//! Request bodies: what an upload sends (`Source`), and the HTTP/1
//! client's body read as it is sent on (`ClientBody`).
//!
//! Between two HTTP/1.1 peers a body passes as it came, chunk framing and
//! trailers included: the state machine only finds where it ends and that
//! it is well formed.

use super::buf::{self, Buf};
use super::chunked::Chunked;
use super::codec::{BodyKind, Reject};
use super::io::Timer;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

/// Why a body could not be taken from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceError {
    /// The client broke the framing or stalled: it gets this answer.
    Refused(Reject),
    /// The client went away mid-body.
    Gone,
}

/// What an upload sends after the head. `P` is the peer the body comes
/// from (the client's stream for an HTTP/1 body; nothing for a body that
/// hyper delivers), passed in by whoever drives the upload, so the same
/// stream can be written to between reads.
pub trait Source<P: ?Sized> {
    /// The next bytes to send; empty once the body is all sent.
    fn poll_data(&mut self, cx: &mut Context<'_>, peer: &mut P)
        -> Poll<Result<&[u8], SourceError>>;
    /// `n` bytes of the last `poll_data` went out.
    fn sent(&mut self, n: usize);
    /// Starts again from the first byte for another try; false if bytes
    /// already sent are gone.
    fn rewind(&mut self) -> bool;
}

/// The answer to a body over the route's max_body_bytes.
pub const TOO_LARGE: Reject = Reject {
    status: 413,
    reason: "the request body is too large",
};

/// No body at all.
pub struct Empty;

impl<P: ?Sized> Source<P> for Empty {
    fn poll_data(&mut self, _: &mut Context<'_>, _: &mut P) -> Poll<Result<&[u8], SourceError>> {
        Poll::Ready(Ok(&[]))
    }
    fn sent(&mut self, _: usize) {}
    fn rewind(&mut self) -> bool {
        true
    }
}

enum Left {
    Length(u64),
    Chunked(Chunked),
    Done,
}

/// A request body read from an HTTP/1 client as it is sent on. It lives in
/// the connection's read buffer right after the (kept) head; bytes are let
/// go only when the buffer needs the room, so a body that fits can be sent
/// again on a retry.
pub struct ClientBody<'a> {
    buf: &'a mut Buf,
    left: Left,
    /// Bytes of `buf.unread()` known to be body, and of those, sent.
    ident: usize,
    pos: usize,
    discarded: bool,
    /// `Expect: 100-continue`: the interim answer sluice owes before it
    /// first waits for body bytes (bytes of it written so far).
    continue_100: Option<usize>,
    timer: &'a mut Timer,
    idle: Duration,
    stall_since: Option<Instant>,
    limit: usize,
    /// The route's max_body_bytes (0: none); a declared length over it
    /// was refused before, so only a chunked body is counted.
    max_body: u64,
}

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

impl<'a> ClientBody<'a> {
    /// `buf.unread()` starts at the body's first byte. `max_trailer` bounds
    /// a chunked body's trailer section; `idle` is how long the client may
    /// leave the body stalled (408).
    pub fn new(
        buf: &'a mut Buf,
        kind: BodyKind,
        expect_continue: bool,
        timer: &'a mut Timer,
        idle: Duration,
        max_trailer: usize,
    ) -> Self {
        let left = match kind {
            BodyKind::Length(n) => Left::Length(n),
            BodyKind::Chunked => Left::Chunked(Chunked::new(max_trailer)),
            BodyKind::None | BodyKind::Close => Left::Done,
        };
        let waiting = !matches!(left, Left::Done);
        ClientBody {
            buf,
            left,
            ident: 0,
            pos: 0,
            discarded: false,
            continue_100: (expect_continue && waiting).then_some(0),
            timer,
            idle,
            stall_since: None,
            // Room for the head, a trailer section and a 64 KiB window of
            // body: uploads move in reads of up to that.
            limit: max_trailer + 64 * 1024,
            max_body: 0,
        }
    }

    /// Refuses (413) a chunked body whose data passes `max` bytes; the
    /// backend then never sees its end.
    pub fn limit_body(&mut self, max: u64) {
        self.max_body = max;
    }

    /// Whether every byte of the body has been read from the client.
    pub fn complete(&self) -> bool {
        matches!(self.left, Left::Done)
    }

    /// The body bytes in the buffer; after the exchange, the caller
    /// consumes them so the buffer holds what follows the request.
    pub fn taken(&self) -> usize {
        self.ident
    }

    /// The body bytes read so far, as they came (framing included): the
    /// whole body once `fill` returned true.
    pub fn kept(&self) -> &[u8] {
        &self.buf.unread()[..self.ident]
    }

    /// Reads the whole body into the buffer without sending anything (to
    /// keep it for replays), if it is at most `max` bytes; false if it is
    /// larger (what was read stays and is sent first).
    pub async fn fill<C: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        client: &mut C,
        max: usize,
    ) -> Result<bool, SourceError> {
        if let Left::Length(n) = self.left {
            if n > max as u64 {
                return Ok(false);
            }
        }
        self.limit = self.limit.max(max + buf::HEAD);
        std::future::poll_fn(|cx| loop {
            self.identify()?;
            if self.complete() {
                return Poll::Ready(Ok(true));
            }
            if self.ident > max {
                return Poll::Ready(Ok(false));
            }
            if self.read_more(cx, client)?.is_pending() {
                return Poll::Pending;
            }
        })
        .await
    }

    /// Checks the body bytes that came with the head: a framing error among
    /// them refuses the request before any backend sees its head.
    pub fn check_buffered(&mut self) -> Result<(), SourceError> {
        self.identify()
    }

    /// Marks buffered bytes that belong to the body.
    fn identify(&mut self) -> Result<(), SourceError> {
        let avail = &self.buf.unread()[self.ident..];
        if avail.is_empty() {
            return Ok(());
        }
        let k = match &mut self.left {
            Left::Length(left) => {
                let k = (avail.len() as u64).min(*left) as usize;
                *left -= k as u64;
                if *left == 0 {
                    self.left = Left::Done;
                }
                k
            }
            Left::Chunked(c) => {
                let (k, done) = c.advance(avail).map_err(SourceError::Refused)?;
                if self.max_body > 0 && c.data_len() > self.max_body {
                    return Err(SourceError::Refused(TOO_LARGE));
                }
                if done {
                    self.left = Left::Done;
                }
                k
            }
            Left::Done => 0,
        };
        self.ident += k;
        Ok(())
    }

    /// Reads more of the body from the client: Ready once bytes came.
    fn read_more<C: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        client: &mut C,
    ) -> Poll<Result<(), SourceError>> {
        while let Some(done) = self.continue_100 {
            if !self.buf.unread()[self.ident..].is_empty() || done == CONTINUE.len() {
                self.continue_100 = None;
                break;
            }
            match Pin::new(&mut *client).poll_write(cx, &CONTINUE[done..]) {
                Poll::Ready(Ok(n)) if n > 0 => self.continue_100 = Some(done + n),
                Poll::Ready(_) => return Poll::Ready(Err(SourceError::Gone)),
                Poll::Pending => return Poll::Pending,
            }
        }
        if !self.buf.reserve(4096, self.limit) {
            // Full of bytes already sent: let them go (no replay now).
            if self.pos == self.ident && self.ident > 0 {
                self.buf.consume(self.ident);
                self.pos = 0;
                self.ident = 0;
                self.discarded = true;
            }
            if !self.buf.reserve(4096, self.limit) {
                return Poll::Ready(Err(SourceError::Gone));
            }
        }
        match self.buf.poll_read(cx, client) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Poll::Ready(Err(SourceError::Gone)),
            Poll::Ready(Ok(_)) => {
                self.stall_since = None;
                self.timer.disarm();
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let since = *self.stall_since.get_or_insert_with(Instant::now);
                if self.timer.poll_at(cx, since + self.idle).is_ready() {
                    return Poll::Ready(Err(SourceError::Refused(Reject {
                        status: 408,
                        reason: "the request body stalled",
                    })));
                }
                Poll::Pending
            }
        }
    }
}

impl<C: AsyncRead + AsyncWrite + Unpin> Source<C> for ClientBody<'_> {
    fn poll_data(
        &mut self,
        cx: &mut Context<'_>,
        client: &mut C,
    ) -> Poll<Result<&[u8], SourceError>> {
        loop {
            if self.pos < self.ident {
                return Poll::Ready(Ok(&self.buf.unread()[self.pos..self.ident]));
            }
            self.identify()?;
            if self.pos < self.ident {
                continue;
            }
            if self.complete() {
                return Poll::Ready(Ok(&[]));
            }
            if self.read_more(cx, client)?.is_pending() {
                return Poll::Pending;
            }
        }
    }

    fn sent(&mut self, n: usize) {
        self.pos += n;
    }

    fn rewind(&mut self) -> bool {
        if self.discarded {
            return false;
        }
        self.pos = 0;
        true
    }
}
