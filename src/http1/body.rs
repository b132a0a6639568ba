//! Bodies by their framing: the client's request body as the source of an
//! upload, and the backend's response body relayed to the client.
//!
//! Between two HTTP/1.1 peers a body passes as it came, chunk framing and
//! trailers included: the state machines only find where it ends and that
//! it is well formed. It is re-framed only where the peers differ: a body
//! that runs until the backend closes goes to an HTTP/1.1 client chunked
//! (so the client connection can stay open), a chunked one to an HTTP/1.0
//! client is decoded and ends with the connection.

use super::buf::{self, Buf};
use super::chunked::{self, Chunked, Piece};
use super::codec::{BodyKind, Reject};
use super::exchange::Upload;
use super::io::Timer;
use std::io::{self, IoSlice};
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
}

/// No body at all.
pub struct Empty;

impl<P: ?Sized> Source<P> for Empty {
    fn poll_data(&mut self, _: &mut Context<'_>, _: &mut P) -> Poll<Result<&[u8], SourceError>> {
        Poll::Ready(Ok(&[]))
    }
    fn sent(&mut self, _: usize) {}
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
        }
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
}

impl ClientBody<'_> {
    /// Starts again from the first byte for another try; false if bytes
    /// already sent are gone.
    pub fn rewind(&mut self) -> bool {
        if self.discarded {
            return false;
        }
        self.pos = 0;
        true
    }
}

/// How a response body is re-framed for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reframe {
    /// As it came.
    Pass,
    /// A body delimited by the backend's close, sent chunked.
    Chunk,
    /// A chunked body, decoded, for a client that ends it by close.
    Dechunk,
}

/// Why a response body did not reach the client whole.
#[derive(Debug)]
pub enum RelayError {
    /// The client stopped reading (or left).
    Client(io::Error),
    /// The backend broke off or broke the framing.
    Backend(&'static str),
    /// The request body, still being sent, failed on the client's side.
    Source(SourceError),
}

/// The response side of an exchange after its head: what the client gets,
/// and the request's side still going (see `Upload`).
pub struct Relay<'a, C, B, S> {
    /// The client's stream: the response goes there, and the rest of the
    /// request body may still come from it.
    pub client: &'a mut C,
    pub backend: &'a mut B,
    /// Backend bytes; the body's first bytes start its unread part.
    pub bbuf: &'a mut Buf,
    /// The client's response head, written with the first body bytes.
    pub head: &'a [u8],
    pub kind: BodyKind,
    pub reframe: Reframe,
    pub timer: &'a mut Timer,
    /// How long a write to the client may wait.
    pub stall: Duration,
    pub upload: &'a mut Upload,
    pub request_head: &'a [u8],
    pub body: &'a mut S,
}

/// One write to the client: a chunk-size line, data (the first bytes of the
/// buffer's unread part) and a fixed tail.
#[derive(Default)]
struct Staged {
    line: [u8; 20],
    line_len: usize,
    data: usize,
    tail: &'static [u8],
    /// The body ends with this write.
    last: bool,
}

/// Relays the response body to the client, sending the rest of the
/// request body meanwhile. Returns the body bytes relayed.
pub async fn relay<C, B, S>(r: Relay<'_, C, B, S>) -> Result<u64, RelayError>
where
    C: AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
    S: Source<C>,
{
    let Relay {
        client,
        backend,
        bbuf,
        head,
        kind,
        reframe,
        timer,
        stall,
        upload,
        request_head,
        body,
    } = r;
    let mut left = kind;
    let mut chunked = Chunked::new(1 << 20);
    let mut staged: Option<Staged> = None;
    let mut written = 0usize;
    let mut head_left = head.len();
    let mut eof = false;
    let mut sent = 0u64;
    let mut since: Option<Instant> = None;
    let result = std::future::poll_fn(|cx| loop {
        let mut progress = false;
        if !upload.finished() {
            progress |= upload
                .poll_send(cx, &mut *backend, request_head, &mut *body, &mut *client)
                .map_err(RelayError::Source)?;
        }
        if let Some(st) = &staged {
            // Head first (once), then the staged write.
            let h = &head[head.len() - head_left..];
            let parts: [&[u8]; 4] = [
                h,
                &st.line[..st.line_len],
                &bbuf.unread()[..st.data],
                st.tail,
            ];
            let total: usize = parts.iter().map(|p| p.len()).sum();
            let mut slices = [IoSlice::new(&[]); 4];
            let (mut n, mut skip) = (0, written);
            for p in parts {
                if skip >= p.len() {
                    skip -= p.len();
                    continue;
                }
                slices[n] = IoSlice::new(&p[skip..]);
                n += 1;
                skip = 0;
            }
            if total > written {
                match Pin::new(&mut *client).poll_write_vectored(cx, &slices[..n]) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(RelayError::Client(
                            io::ErrorKind::WriteZero.into(),
                        )))
                    }
                    Poll::Ready(Ok(w)) => {
                        written += w;
                        since = None;
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(RelayError::Client(e))),
                    Poll::Pending => {
                        let t = *since.get_or_insert_with(Instant::now);
                        if timer.poll_at(cx, t + stall).is_ready() {
                            return Poll::Ready(Err(RelayError::Client(
                                io::ErrorKind::TimedOut.into(),
                            )));
                        }
                    }
                }
            }
            if written >= total {
                let done = st.last;
                let data = st.data;
                bbuf.consume(data);
                sent += data as u64;
                head_left = 0;
                written = 0;
                staged = None;
                if done {
                    return Poll::Ready(Ok(sent));
                }
                progress = true;
            }
        } else {
            match stage(&mut left, &mut chunked, reframe, bbuf, eof) {
                Err(why) => return Poll::Ready(Err(RelayError::Backend(why))),
                Ok(Some(st)) => {
                    staged = Some(st);
                    progress = true;
                }
                Ok(None) if eof => {
                    return Poll::Ready(Err(RelayError::Backend("backend closed mid-body")))
                }
                Ok(None) => {
                    if !bbuf.reserve(buf::BODY / 4, buf::BODY) {
                        return Poll::Ready(Err(RelayError::Backend("response buffer full")));
                    }
                    match bbuf.poll_read(cx, &mut *backend) {
                        Poll::Ready(Ok(0)) => {
                            eof = true;
                            progress = true;
                        }
                        Poll::Ready(Ok(_)) => progress = true,
                        Poll::Ready(Err(_)) => {
                            return Poll::Ready(Err(RelayError::Backend(
                                "backend connection failed mid-body",
                            )))
                        }
                        Poll::Pending => {}
                    }
                }
            }
        }
        if !progress {
            return Poll::Pending;
        }
    })
    .await;
    timer.disarm();
    result
}

/// The next write of the body from what is buffered: None when more bytes
/// are needed (or, at `eof`, when the body is cut short).
fn stage(
    left: &mut BodyKind,
    chunked: &mut Chunked,
    reframe: Reframe,
    bbuf: &mut Buf,
    eof: bool,
) -> Result<Option<Staged>, &'static str> {
    let avail = bbuf.unread();
    let data = |n: usize, last: bool| Staged {
        data: n,
        last,
        ..Default::default()
    };
    Ok(match (&mut *left, reframe) {
        (BodyKind::None, _) => Some(data(0, true)),
        (BodyKind::Length(n), _) => {
            let k = (avail.len() as u64).min(*n) as usize;
            *n -= k as u64;
            (k > 0).then(|| data(k, *n == 0))
        }
        (BodyKind::Close, Reframe::Chunk) if eof => Some(Staged {
            tail: b"0\r\n\r\n",
            last: true,
            ..Default::default()
        }),
        (BodyKind::Close, Reframe::Chunk) => (!avail.is_empty()).then(|| {
            let mut st = Staged {
                data: avail.len(),
                tail: b"\r\n",
                ..Default::default()
            };
            st.line_len = chunked::size_line_into(&mut st.line, avail.len());
            st
        }),
        (BodyKind::Close, _) if eof => Some(data(0, true)),
        (BodyKind::Close, _) => (!avail.is_empty()).then(|| data(avail.len(), false)),
        (BodyKind::Chunked, Reframe::Dechunk) => {
            // Framing and trailer are dropped as they come; data is staged.
            let mut skip = 0;
            let mut out = None;
            while skip < avail.len() {
                let s = chunked.step(&avail[skip..]).map_err(|r| r.reason)?;
                if s.piece == Piece::Data && s.len > 0 {
                    out = Some(data(s.len, false));
                    break;
                }
                skip += s.len;
                if s.done {
                    out = Some(data(0, true));
                    break;
                }
                if s.len == 0 {
                    break;
                }
            }
            bbuf.consume(skip);
            out
        }
        (BodyKind::Chunked, _) => {
            let (k, done) = chunked.advance(avail).map_err(|r| r.reason)?;
            (k > 0 || done).then(|| data(k, done))
        }
    })
}
