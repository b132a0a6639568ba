//! One try of a request on one backend connection: write the head, send
//! the body, and read the response head, all from the one task that owns
//! both ends.
//!
//! The body is sent while the backend's socket is watched, so an answer
//! that comes before the body is all sent (a 413, a 401) ends the upload at
//! once, and interim 1xx answers are dropped as they come (sluice answers
//! `Expect: 100-continue` itself; 103 hints are not passed on). One poll
//! loop does it, over any stream (plain or TLS), with no second task and no
//! channel: each pass reads what the backend sent, writes what is ready,
//! and returns Pending only when neither side can move.

use super::body::{Source, SourceError};
use super::buf::Buf;
use super::codec::{self, ResponseHead};
use super::io::{Stream, Timer};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use tokio::time::Instant;

/// The largest response head sluice reads from a backend (hyper's default
/// is about 400 KiB): a broken or hostile backend cannot make sluice buffer
/// more than this per head. Larger heads are 502.
pub const RESPONSE_HEAD_LIMIT: usize = 128 * 1024;

/// Why a try got no usable response head.
#[derive(Debug)]
pub enum Failure {
    /// The backend closed or reset the connection before sending a byte
    /// of a response (on a pooled connection: most likely closed while idle).
    Closed(io::Error),
    /// The backend's answer was not a usable HTTP/1 response.
    Broken(&'static str),
    /// No response head within the deadline.
    Timeout,
    /// The client's body failed (framing, stall, gone).
    Client(SourceError),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Closed(e) => write!(f, "connection closed before a response: {e}"),
            Failure::Broken(why) => f.write_str(why),
            Failure::Timeout => f.write_str("no response in time"),
            Failure::Client(e) => write!(f, "client body failed: {e:?}"),
        }
    }
}

impl std::error::Error for Failure {}

/// The request's side of an exchange: how far its head and body have gone
/// out. It outlives the wait for the response head: a backend may answer
/// before it has read the whole body (an echo streams its answer as the
/// body comes), so the body goes on being sent while the answer is relayed.
#[derive(Debug, Default)]
pub struct Upload {
    head_sent: usize,
    /// The whole body was sent.
    pub body_done: bool,
    /// The backend stopped reading (a write failed): nothing more goes out.
    pub write_failed: bool,
}

impl Upload {
    /// Whether nothing more will be sent.
    pub fn finished(&self) -> bool {
        self.body_done || self.write_failed
    }

    /// Sends what is ready of `head` then `body`; true if anything moved.
    /// A write error is not returned: the backend's answer may be on its
    /// way, and the caller reads it.
    pub fn poll_send<B, S, P>(
        &mut self,
        cx: &mut Context<'_>,
        backend: &mut B,
        head: &[u8],
        body: &mut S,
        peer: &mut P,
    ) -> Result<bool, SourceError>
    where
        B: AsyncWrite + Unpin,
        S: Source<P>,
        P: ?Sized,
    {
        let mut progress = false;
        while !self.finished() {
            if self.head_sent < head.len() {
                match Pin::new(&mut *backend).poll_write(cx, &head[self.head_sent..]) {
                    Poll::Ready(Ok(n)) if n > 0 => self.head_sent += n,
                    Poll::Ready(_) => self.write_failed = true,
                    Poll::Pending => return Ok(progress),
                }
                progress = true;
                continue;
            }
            match body.poll_data(cx, peer) {
                Poll::Ready(Ok([])) => self.body_done = true,
                Poll::Ready(Ok(data)) => match Pin::new(&mut *backend).poll_write(cx, data) {
                    Poll::Ready(Ok(n)) if n > 0 => body.sent(n),
                    Poll::Ready(_) => self.write_failed = true,
                    Poll::Pending => return Ok(progress),
                },
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Ok(progress),
            }
            progress = true;
        }
        Ok(progress)
    }
}

/// What a try needs besides the two streams.
pub struct Try<'a, S, P: ?Sized> {
    /// The request head, written first.
    pub head: &'a [u8],
    pub body: &'a mut S,
    /// Where the body comes from (see `Source`).
    pub peer: &'a mut P,
    pub resp_buf: &'a mut Buf,
    pub resp: &'a mut ResponseHead,
    /// The request was HEAD: its answer has no body whatever its head says.
    pub head_request: bool,
    /// The request asked to switch protocols (a 101 may answer it).
    pub upgrade: bool,
    /// When the response head must have arrived.
    pub deadline: Instant,
    pub timer: &'a mut Timer,
}

/// Sends the request and reads the response head into `t.resp` (its bytes
/// start `t.resp_buf.unread()`). On success the returned `Upload` says how
/// far the request got; the caller goes on sending the rest while it
/// relays the answer.
pub async fn send<B, S, P>(backend: &mut B, t: Try<'_, S, P>) -> Result<Upload, Failure>
where
    B: Stream,
    S: Source<P>,
    P: ?Sized,
{
    let Try {
        head,
        body,
        peer,
        resp_buf,
        resp,
        head_request,
        upgrade,
        deadline,
        timer,
    } = t;
    let mut upload = Upload::default();
    let mut scanned = 0;
    let mut received = false;
    let result = std::future::poll_fn(|cx| loop {
        let mut progress = false;
        // The backend's side: a response (or interim answers) may come at
        // any time, even before the request is all sent. The buffer is
        // taken when the first bytes are there to read.
        let readable = resp_buf.has_storage() || backend.poll_readable(cx).is_ready();
        if readable && !resp_buf.reserve(1024, RESPONSE_HEAD_LIMIT + 1024) {
            return Poll::Ready(Err(Failure::Broken("response head too large")));
        }
        let polled = if readable {
            resp_buf.poll_read(cx, backend)
        } else {
            Poll::Pending
        };
        match polled {
            Poll::Ready(Ok(0)) => {
                return Poll::Ready(Err(if received {
                    Failure::Broken("backend closed the connection mid-head")
                } else {
                    Failure::Closed(io::ErrorKind::UnexpectedEof.into())
                }))
            }
            Poll::Ready(Ok(_)) => {
                received = true;
                progress = true;
                loop {
                    match codec::parse_response(
                        resp_buf.unread(),
                        resp,
                        &mut scanned,
                        RESPONSE_HEAD_LIMIT,
                        head_request,
                    ) {
                        Ok(true) if resp.status == 101 && !upgrade => {
                            return Poll::Ready(Err(Failure::Broken(
                                "backend switched protocols unasked",
                            )));
                        }
                        Ok(true) if resp.informational() && resp.status != 101 => {
                            resp_buf.consume(resp.len);
                        }
                        Ok(true) => return Poll::Ready(Ok(())),
                        Ok(false) => break,
                        Err(e) => return Poll::Ready(Err(Failure::Broken(e.0))),
                    }
                }
            }
            Poll::Ready(Err(e)) => {
                return Poll::Ready(Err(if received {
                    Failure::Broken("backend connection failed mid-head")
                } else {
                    Failure::Closed(e)
                }))
            }
            Poll::Pending => {}
        }
        // The request's side.
        match upload.poll_send(cx, backend, head, body, peer) {
            Ok(moved) => progress |= moved,
            Err(e) => return Poll::Ready(Err(Failure::Client(e))),
        }
        if progress {
            continue;
        }
        if timer.poll_at(cx, deadline).is_ready() {
            return Poll::Ready(Err(Failure::Timeout));
        }
        return Poll::Pending;
    })
    .await;
    timer.disarm();
    result.map(|()| upload)
}
