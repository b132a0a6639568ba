//! The client connection's byte stream, under hyper: it enforces the
//! listener's time and size limits on the request head, which hyper alone
//! does not do the way an edge proxy must.
//!
//! - `header_read_timeout`: from the first byte of a request head (from
//!   accept, for the first request) until its end; on expiry sluice answers
//!   408 and closes. hyper's own timer closes without a response.
//! - `idle_timeout`: a keep-alive connection with no request in progress is
//!   closed after this long. hyper has no such timer for HTTP/1.
//! - `max_header_bytes`: a head longer than this gets 431 with sluice's
//!   text/plain body naming a request id, exactly at the configured size
//!   (hyper's buffer limit is coarser and answers with an empty body).
//!
//! The wrapper sees the raw head bytes as they are read and tracks where
//! each head ends; whether a request is in progress comes from `ConnInfo`,
//! which the request path updates. After answering 408/431 it half-closes
//! and drains what the client still sends for a moment (a lingering close),
//! so the client reads the response instead of a reset.

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

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
}

enum Phase {
    /// Between requests: no byte of the next head yet.
    Idle,
    /// Reading a head: bytes so far, and the line-end scanner's state.
    Head {
        bytes: usize,
        nl: u8,
    },
    /// A head was complete; waiting for the request (started in `epoch`) to end.
    InRequest {
        epoch: u64,
    },
    /// Writing a rejection, then draining.
    Rejecting {
        response: Vec<u8>,
        written: usize,
    },
    Draining {
        until: Instant,
        drained: usize,
    },
    Closed,
}

pub struct ConnIo<T> {
    inner: T,
    info: Arc<ConnInfo>,
    limits: Limits,
    phase: Phase,
    /// HTTP/2 (prior knowledge or ALPN): no head scanning, only the idle timer.
    h2: bool,
    first_read: bool,
    timer: Pin<Box<Sleep>>,
    armed: bool,
    /// For HTTP/2: the idle epoch the timer was armed in.
    armed_epoch: u64,
}

impl<T> ConnIo<T> {
    pub fn new(inner: T, info: Arc<ConnInfo>, limits: Limits, h2: bool) -> ConnIo<T> {
        ConnIo {
            inner,
            info,
            limits,
            // The first head is due header_read_timeout after accept.
            phase: if h2 {
                Phase::Idle
            } else {
                Phase::Head { bytes: 0, nl: 1 }
            },
            h2,
            first_read: true,
            timer: Box::pin(tokio::time::sleep(if h2 {
                limits.idle_timeout
            } else {
                limits.header_read_timeout
            })),
            armed: true,
            armed_epoch: 0,
        }
    }

    fn arm(&mut self, after: Duration) {
        self.timer.as_mut().reset(Instant::now() + after);
        self.armed = true;
    }

    fn reject(&mut self, status: u16) {
        let request_id = crate::proxy::request_id::generate();
        let (reason, detail) = match status {
            408 => ("Request Timeout", "the request head did not arrive in time"),
            _ => (
                "Request Header Fields Too Large",
                "the request head is too large",
            ),
        };
        let body = format!("{status} {reason}: {detail} (request id {request_id})\n");
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\nx-request-id: {request_id}\r\n\r\n{body}",
            body.len()
        );
        self.info.rejected(status, &request_id);
        self.phase = Phase::Rejecting {
            response: response.into_bytes(),
            written: 0,
        };
        self.armed = false;
    }
}

/// Advances the end-of-head scanner over `bytes`. `nl` is 1 at the start of
/// a line, 2 after a CR at the start of a line, 0 inside a line. Returns the
/// index just past the blank line that ends the head, if it is in `bytes`.
/// Bare LF line ends are accepted here; hyper's parser decides what is valid.
fn scan_head(bytes: &[u8], nl: &mut u8) -> Option<usize> {
    for (i, &b) in bytes.iter().enumerate() {
        *nl = match (b, *nl) {
            (b'\n', 1 | 2) => return Some(i + 1),
            (b'\n', _) => 1,
            (b'\r', 1) => 2,
            _ => 0,
        };
    }
    None
}

impl<T: AsyncRead + AsyncWrite + Unpin> ConnIo<T> {
    /// Drives a rejection: write it, half-close, drain. Ready means "report
    /// end of stream to hyper".
    fn poll_reject(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match &mut self.phase {
                Phase::Rejecting { response, written } => {
                    while *written < response.len() {
                        match ready!(Pin::new(&mut self.inner).poll_write(cx, &response[*written..]))
                        {
                            Ok(0) | Err(_) => {
                                self.phase = Phase::Closed;
                                return Poll::Ready(Ok(()));
                            }
                            Ok(n) => *written += n,
                        }
                    }
                    // A failed shutdown only means the client is gone already.
                    if ready!(Pin::new(&mut self.inner).poll_shutdown(cx)).is_err() {
                        self.phase = Phase::Closed;
                        return Poll::Ready(Ok(()));
                    }
                    let until = Instant::now() + LINGER_TIME;
                    self.timer.as_mut().reset(until);
                    self.phase = Phase::Draining { until, drained: 0 };
                }
                Phase::Draining { until, drained } => {
                    let mut scratch = [0u8; 4096];
                    let mut buf = ReadBuf::new(&mut scratch);
                    match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                        Poll::Ready(Ok(()))
                            if !buf.filled().is_empty() && *drained < LINGER_BYTES =>
                        {
                            *drained += buf.filled().len();
                        }
                        Poll::Pending if Instant::now() < *until => {
                            if self.timer.as_mut().poll(cx).is_ready() {
                                self.phase = Phase::Closed;
                                return Poll::Ready(Ok(()));
                            }
                            return Poll::Pending;
                        }
                        _ => {
                            self.phase = Phase::Closed;
                            return Poll::Ready(Ok(()));
                        }
                    }
                }
                Phase::Closed => return Poll::Ready(Ok(())),
                _ => return Poll::Ready(Ok(())),
            }
        }
    }

    fn refresh_idle(&mut self) {
        let epoch = self.info.idle_epoch();
        if self.h2 {
            if self.info.requests_in_progress() > 0 {
                self.armed = false;
            } else if !self.armed || self.armed_epoch != epoch {
                self.armed_epoch = epoch;
                self.arm(self.limits.idle_timeout);
            }
            return;
        }
        if let Phase::InRequest { epoch: started } = self.phase {
            if started != epoch && self.info.requests_in_progress() == 0 {
                self.phase = Phase::Idle;
                self.arm(self.limits.idle_timeout);
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
        if this.info.is_upgraded() {
            // A WebSocket tunnel: its own idle timer governs it.
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        if matches!(
            this.phase,
            Phase::Rejecting { .. } | Phase::Draining { .. } | Phase::Closed
        ) {
            return this.poll_reject(cx);
        }
        this.refresh_idle();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if new.is_empty() || this.h2 {
                    return Poll::Ready(Ok(()));
                }
                if std::mem::take(&mut this.first_read) && new.starts_with(b"PRI * HTTP/2") {
                    this.h2 = true;
                    this.phase = Phase::Idle;
                    this.armed = false;
                    return Poll::Ready(Ok(()));
                }
                if let Phase::Idle = this.phase {
                    this.phase = Phase::Head { bytes: 0, nl: 1 };
                    this.arm(this.limits.header_read_timeout);
                }
                if let Phase::Head { bytes, nl } = &mut this.phase {
                    let end = scan_head(new, nl);
                    let head_bytes = *bytes + end.unwrap_or(new.len());
                    if head_bytes > this.limits.max_header_bytes {
                        // Hyper never sees the bytes past the limit.
                        buf.set_filled(before);
                        this.reject(431);
                        return this.poll_reject(cx);
                    }
                    *bytes = head_bytes;
                    if end.is_some() {
                        this.phase = Phase::InRequest {
                            epoch: this.info.idle_epoch(),
                        };
                        this.armed = false;
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if this.armed && this.timer.as_mut().poll(cx).is_ready() {
                    this.armed = false;
                    match this.phase {
                        Phase::Head { .. } => {
                            this.reject(408);
                            return this.poll_reject(cx);
                        }
                        Phase::Idle => {
                            this.phase = Phase::Closed;
                            return Poll::Ready(Ok(()));
                        }
                        _ => {}
                    }
                }
                let waiting_for = match this.phase {
                    Phase::InRequest { epoch } => Some(epoch),
                    _ if this.h2 && !this.armed => Some(this.armed_epoch),
                    _ => None,
                };
                if let Some(epoch) = waiting_for {
                    this.info.wake_when_idle(cx.waker());
                    // The request may have ended between the check above and
                    // the registration: look again rather than sleep forever.
                    if this.info.idle_epoch() != epoch && this.info.requests_in_progress() == 0 {
                        cx.waker().wake_by_ref();
                    }
                }
                Poll::Pending
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
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::scan_head;

    fn end(chunks: &[&[u8]]) -> Option<usize> {
        let mut nl = 1;
        let mut offset = 0;
        for c in chunks {
            if let Some(i) = scan_head(c, &mut nl) {
                return Some(offset + i);
            }
            offset += c.len();
        }
        None
    }

    #[test]
    fn finds_the_blank_line_across_reads() {
        assert_eq!(end(&[b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody"]), Some(27));
        assert_eq!(
            end(&[b"GET / HTTP/1.1\r\nHost: a\r", b"\n\r", b"\nxx"]),
            Some(27)
        );
        assert_eq!(end(&[b"GET / HTTP/1.1\nHost: a\n\n"]), Some(24));
        assert_eq!(end(&[b"GET / HTTP/1.1\r\nHost: a\r\n"]), None);
        assert_eq!(end(&[b"GET / HTTP/1.1\r\nX: \r\r\n"]), None);
    }
}
