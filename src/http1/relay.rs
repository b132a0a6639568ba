//! The response body relayed to the client, by its framing, while the rest
//! of the request body may still be going to the backend (see
//! `exchange::Upload`).
//!
//! Between two HTTP/1.1 peers a body passes as it came, chunk framing and
//! trailers included. It is re-framed only where the peers differ: a body
//! that runs until the backend closes goes to an HTTP/1.1 client chunked
//! (so the client connection can stay open), a chunked one to an HTTP/1.0
//! client is decoded and ends with the connection.

use super::body::{Source, SourceError};
use super::buf::{self, Buf};
use super::chunked::{self, Chunked, Piece};
use super::codec::BodyKind;
use super::exchange::Upload;
use super::io::Timer;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

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
    /// Compress the body (`route.compress`): it goes to the client chunked,
    /// whatever its framing from the backend.
    pub encoder: Option<crate::compress::Encoder>,
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
    /// The data is the encoder's output, not the buffer's.
    encoded: bool,
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
        mut encoder,
    } = r;
    let mut zout = Vec::new();
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
            let began = head_left < head.len() || written > 0;
            progress |= upload
                .poll_send(cx, &mut *backend, request_head, &mut *body, &mut *client)
                .map_err(|e| match began {
                    // The client has (part of) the response already: no
                    // other answer can follow; the connection just ends.
                    true => RelayError::Client(io::Error::other(format!(
                        "request body failed after the response began: {e:?}"
                    ))),
                    false => RelayError::Source(e),
                })?;
        }
        if let Some(st) = &staged {
            // Head first (once), then the staged write.
            let h = &head[head.len() - head_left..];
            let data = if st.encoded {
                &zout[..]
            } else {
                &bbuf.unread()[..st.data]
            };
            let parts: [&[u8]; 4] = [h, &st.line[..st.line_len], data, st.tail];
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
                if st.encoded {
                    zout.clear();
                } else {
                    bbuf.consume(data);
                }
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
            let staged_now = match encoder.as_mut() {
                Some(e) => stage_encoded(&mut left, &mut chunked, bbuf, eof, e, &mut zout),
                None => stage(&mut left, &mut chunked, reframe, bbuf, eof),
            };
            match staged_now {
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

/// Whether a response of a `compress` route varies by Accept-Encoding, and
/// the encoder for its body when the client takes a coding (`coding`) and
/// can get it (not HEAD, not HTTP/1.0: the body goes chunked).
pub fn compression(
    resp: &super::codec::ResponseHead,
    buf: &[u8],
    coding: Option<crate::compress::Coding>,
    plain_only: bool,
) -> (
    bool,
    Option<(crate::compress::Coding, crate::compress::Encoder)>,
) {
    let value = |name: &[u8]| {
        resp.fields
            .iter()
            .find(|f| f.name.get(buf).eq_ignore_ascii_case(name))
            .map(|f| f.value.get(buf))
    };
    let length = match resp.body {
        BodyKind::Length(n) => Some(n),
        BodyKind::None => Some(0),
        _ => None,
    };
    let eligible = resp.body != BodyKind::None
        && crate::compress::eligible(
            resp.status,
            value(b"content-type"),
            value(b"content-encoding").is_some(),
            length,
            value(b"cache-control").is_some_and(crate::compress::no_transform),
        );
    let encoder = match (eligible && !plain_only, coding) {
        (true, Some(c)) => crate::compress::Encoder::new(c).ok().map(|e| (c, e)),
        _ => None,
    };
    (eligible, encoder)
}

/// The next write of a compressed body: the buffered body bytes (decoded
/// from their framing) go through the encoder, and its flushed output is
/// staged as one chunk (with the last chunk once the body ended).
fn stage_encoded(
    left: &mut BodyKind,
    chunked: &mut Chunked,
    bbuf: &mut Buf,
    eof: bool,
    encoder: &mut crate::compress::Encoder,
    zout: &mut Vec<u8>,
) -> Result<Option<Staged>, &'static str> {
    const FAILED: &str = "compression failed";
    let avail = bbuf.unread();
    let mut finished = false;
    let mut fed = false;
    let taken = match left {
        BodyKind::None => {
            finished = true;
            0
        }
        BodyKind::Length(n) => {
            let k = (avail.len() as u64).min(*n) as usize;
            *n -= k as u64;
            finished = *n == 0;
            k
        }
        BodyKind::Close => {
            finished = eof;
            avail.len()
        }
        BodyKind::Chunked => {
            let mut at = 0;
            while at < avail.len() {
                let s = chunked.step(&avail[at..]).map_err(|r| r.reason)?;
                if s.piece == Piece::Data && s.len > 0 {
                    encoder.feed(&avail[at..at + s.len]).map_err(|_| FAILED)?;
                    fed = true;
                }
                at += s.len;
                if s.done {
                    finished = true;
                    break;
                }
                if s.len == 0 {
                    break;
                }
            }
            at
        }
    };
    if !matches!(left, BodyKind::Chunked) && taken > 0 {
        encoder.feed(&avail[..taken]).map_err(|_| FAILED)?;
        fed = true;
    }
    bbuf.consume(taken);
    if finished {
        encoder.finish(zout).map_err(|_| FAILED)?;
    } else if fed {
        encoder.flush(zout).map_err(|_| FAILED)?;
    }
    if zout.is_empty() && !finished {
        return Ok(None);
    }
    let mut st = Staged {
        data: zout.len(),
        encoded: true,
        last: finished,
        tail: match (finished, zout.is_empty()) {
            (true, true) => b"0\r\n\r\n",
            (true, false) => b"\r\n0\r\n\r\n",
            (false, _) => b"\r\n",
        },
        ..Default::default()
    };
    if !zout.is_empty() {
        st.line_len = chunked::size_line_into(&mut st.line, zout.len());
    }
    Ok(Some(st))
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
