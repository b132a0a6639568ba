//! The engine's backend side for a pool that speaks HTTP/2 (`protocol =
//! "h2"` or `"h2c"`): one HTTP/2 stream, driven by the engine as if it were
//! an HTTP/1.1 connection carrying one exchange.
//!
//! - The request head the engine writes (routed, rewritten, with the
//!   forwarding fields) becomes the stream's HEADERS: Host becomes
//!   `:authority`, the connection-specific fields are dropped, and `TE` is
//!   kept only as `trailers` (gRPC needs it).
//! - Its body, length-framed or chunked, goes as DATA within the stream's
//!   flow-control window; a chunked body's trailer section goes as
//!   trailers.
//! - The response comes back as HTTP/1.1 bytes: its head, then its body,
//!   chunked with its trailers (gRPC's `grpc-status`) in the chunked
//!   trailer section, or as it is when the backend gave a Content-Length.
//!
//! So every front end (HTTP/1 and HTTP/2 clients) and every part of the
//! engine (retries, timeouts, compression, header rules, accounting)
//! serves HTTP/2 backends unchanged, at the price of one more head parse
//! and one copy of each DATA frame. The backend's window opens again only
//! as the engine reads what it sent, so a slow client slows the backend
//! instead of filling sluice's memory. Dropping the exchange before its
//! end (the client left, a deadline passed) resets the stream.

use super::chunked::Piece;
use super::h2_heads::{request, response_head, trailers, Framing};
use super::write::field;
use crate::backend::h2::StreamSlot;
use bytes::Bytes;
use h2::client::ResponseFuture;
use h2::{RecvStream, SendStream};
use http::{Method, Request};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The longest request head taken (the engine's own limit is lower).
const HEAD_LIMIT: usize = 1 << 20;

/// One exchange on one HTTP/2 stream, read and written as HTTP/1.1.
pub struct H2Exchange {
    slot: StreamSlot,
    https: bool,
    /// `:authority` when the head has no Host (an HTTP/1.0 client's).
    fallback_authority: std::sync::Arc<str>,
    up: Up,
    down: Down,
    head_request: bool,
    /// HTTP/1.1 bytes of the response, ready to be read from `pos`.
    out: Vec<u8>,
    pos: usize,
}

enum Up {
    /// The request head so far.
    Head(Vec<u8>),
    /// The head, waiting for the connection to take a new stream.
    Ready(Request<()>, Framing),
    Body(SendStream<Bytes>, Framing),
    Done,
}

enum Down {
    NotSent,
    Waiting(ResponseFuture),
    Body(RecvStream, bool),
    Done,
}

impl H2Exchange {
    pub fn new(
        slot: StreamSlot,
        https: bool,
        fallback_authority: std::sync::Arc<str>,
    ) -> H2Exchange {
        H2Exchange {
            slot,
            https,
            fallback_authority,
            up: Up::Head(Vec::new()),
            down: Down::NotSent,
            head_request: false,
            out: Vec::new(),
            pos: 0,
        }
    }

    /// Opens the stream once the connection may take it.
    fn poll_start(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !matches!(self.up, Up::Ready(..)) {
            return Poll::Ready(Ok(()));
        }
        ready!(self.slot.send.poll_ready(cx)).map_err(broken)?;
        let Up::Ready(req, framing) = std::mem::replace(&mut self.up, Up::Done) else {
            return Poll::Ready(Ok(()));
        };
        let empty = matches!(framing, Framing::None);
        let (resp, stream) = self.slot.send.send_request(req, empty).map_err(broken)?;
        self.down = Down::Waiting(resp);
        if !empty {
            self.up = Up::Body(stream, framing);
        }
        Poll::Ready(Ok(()))
    }

    /// Takes bytes of the request; how many were taken.
    fn take(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut taken = 0;
        while taken < buf.len() {
            let rest = &buf[taken..];
            match &mut self.up {
                Up::Head(head) => {
                    let from = head.len().saturating_sub(3);
                    head.extend_from_slice(rest);
                    let Some(end) = memchr::memmem::find(&head[from..], b"\r\n\r\n") else {
                        if head.len() > HEAD_LIMIT {
                            return Poll::Ready(Err(invalid("request head too large")));
                        }
                        return Poll::Ready(Ok(buf.len()));
                    };
                    let end = from + end + 4;
                    taken += rest.len() - (head.len() - end);
                    head.truncate(end);
                    let (req, framing) = request(head, self.https, &self.fallback_authority)?;
                    self.head_request = req.method() == Method::HEAD;
                    self.up = Up::Ready(req, framing);
                }
                Up::Ready(..) => match self.poll_start(cx) {
                    Poll::Ready(r) => r?,
                    Poll::Pending if taken > 0 => break,
                    Poll::Pending => return Poll::Pending,
                },
                Up::Body(stream, framing) => {
                    let (n, ended) = match send_body(cx, stream, framing, rest) {
                        Poll::Ready(r) => r?,
                        Poll::Pending if taken > 0 => break,
                        Poll::Pending => return Poll::Pending,
                    };
                    taken += n;
                    if ended {
                        self.up = Up::Done;
                    }
                }
                Up::Done if taken > 0 => break,
                Up::Done => return Poll::Ready(Err(invalid("bytes after the request's end"))),
            }
        }
        Poll::Ready(Ok(taken))
    }

    /// Moves the response on: its head, or its next frame, as HTTP/1.1
    /// bytes in `out`. Ready(false) at its end.
    fn poll_response(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        ready!(self.poll_start(cx))?;
        match &mut self.down {
            // The engine writes the head before it reads; nothing to wait for.
            Down::NotSent => Poll::Pending,
            Down::Waiting(resp) => {
                let resp = match ready!(Pin::new(resp).poll(cx)) {
                    Ok(r) => r,
                    // Refused or cut by GOAWAY before it was processed: the
                    // engine sees the connection close before an answer,
                    // which it may try again on a new connection.
                    Err(e) if refused(&e) => {
                        self.down = Down::Done;
                        return Poll::Ready(Ok(false));
                    }
                    Err(e) => return Poll::Ready(Err(broken(e))),
                };
                let chunked = response_head(&mut self.out, &resp, self.head_request);
                let body = resp.into_body();
                self.down = if self.head_request || body.is_end_stream() && !chunked {
                    Down::Done
                } else {
                    Down::Body(body, chunked)
                };
                Poll::Ready(Ok(true))
            }
            Down::Body(body, chunked) => {
                let out = &mut self.out;
                match ready!(body.poll_data(cx)) {
                    Some(Ok(data)) => {
                        // The window opens as the engine takes the bytes.
                        let _ = body.flow_control().release_capacity(data.len());
                        if !*chunked {
                            out.extend_from_slice(&data);
                        } else if !data.is_empty() {
                            super::chunked::size_line(out, data.len());
                            out.extend_from_slice(&data);
                            out.extend_from_slice(b"\r\n");
                        }
                        Poll::Ready(Ok(true))
                    }
                    Some(Err(e)) => Poll::Ready(Err(broken(e))),
                    None if !*chunked => {
                        self.down = Down::Done;
                        Poll::Ready(Ok(true))
                    }
                    None => {
                        let trailers = ready!(body.poll_trailers(cx)).map_err(broken)?;
                        out.extend_from_slice(b"0\r\n");
                        for (name, value) in trailers.iter().flatten() {
                            field(out, name.as_str().as_bytes(), value.as_bytes());
                        }
                        out.extend_from_slice(b"\r\n");
                        self.down = Down::Done;
                        Poll::Ready(Ok(true))
                    }
                }
            }
            Down::Done => Poll::Ready(Ok(false)),
        }
    }
}

impl AsyncWrite for H2Exchange {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().take(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // HTTP/2 frames go out from the connection's task; a head that
        // waits for a stream still has to be sent.
        self.get_mut().poll_start(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for H2Exchange {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.pos < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.pos);
                buf.put_slice(&this.out[this.pos..this.pos + n]);
                this.pos += n;
                return Poll::Ready(Ok(()));
            }
            this.out.clear();
            this.pos = 0;
            if !ready!(this.poll_response(cx))? {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

/// Sends bytes of the request body within the stream's window: how many
/// were taken, and whether the body ended with them.
fn send_body(
    cx: &mut Context<'_>,
    stream: &mut SendStream<Bytes>,
    framing: &mut Framing,
    bytes: &[u8],
) -> Poll<io::Result<(usize, bool)>> {
    match framing {
        Framing::None => Poll::Ready(Ok((0, true))),
        Framing::Length(left) => {
            let want = (bytes.len() as u64).min(*left) as usize;
            let n = ready!(poll_room(cx, stream, want))?;
            *left -= n as u64;
            let data = Bytes::copy_from_slice(&bytes[..n]);
            stream.send_data(data, *left == 0).map_err(broken)?;
            Poll::Ready(Ok((n, *left == 0)))
        }
        Framing::Chunked(chunked, trailer) => {
            if chunked.in_data() {
                let n = ready!(poll_room(cx, stream, bytes.len()))?;
                let step = chunked.step(&bytes[..n]).map_err(reject)?;
                let data = Bytes::copy_from_slice(&bytes[..step.len]);
                stream.send_data(data, false).map_err(broken)?;
                return Poll::Ready(Ok((step.len, false)));
            }
            let step = chunked.step(bytes).map_err(reject)?;
            if step.piece == Piece::Trailer {
                trailer.extend_from_slice(&bytes[..step.len]);
                if trailer.len() > super::h2_heads::TRAILER_LIMIT {
                    return Poll::Ready(Err(invalid("request trailers too large")));
                }
            }
            if step.done {
                match trailers(trailer)? {
                    Some(t) => stream.send_trailers(t),
                    None => stream.send_data(Bytes::new(), true),
                }
                .map_err(broken)?;
            }
            Poll::Ready(Ok((step.len, step.done)))
        }
    }
}

/// Room in the stream's window for up to `want` bytes (some, not all).
fn poll_room(
    cx: &mut Context<'_>,
    stream: &mut SendStream<Bytes>,
    want: usize,
) -> Poll<io::Result<usize>> {
    if want == 0 {
        return Poll::Ready(Ok(0));
    }
    if stream.capacity() == 0 {
        stream.reserve_capacity(want);
    }
    loop {
        let room = stream.capacity();
        if room > 0 {
            return Poll::Ready(Ok(room.min(want)));
        }
        match ready!(stream.poll_capacity(cx)) {
            Some(Ok(_)) => {}
            Some(Err(e)) => return Poll::Ready(Err(broken(e))),
            None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }
}

/// A stream the backend did not process: refused, or above the last one a
/// GOAWAY let finish.
fn refused(e: &h2::Error) -> bool {
    e.reason() == Some(h2::Reason::REFUSED_STREAM) || (e.is_go_away() && e.is_remote())
}

fn broken(e: h2::Error) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, e)
}

pub(super) fn invalid(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

fn reject(r: super::codec::Reject) -> io::Error {
    invalid(r.reason)
}
