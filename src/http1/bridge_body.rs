//! The backend's HTTP/1 response body as HTTP/2 frames for hyper: data as
//! it comes, a chunked body's trailer section (gRPC's `grpc-status`) as a
//! trailers frame, and the rest of the request body sent meanwhile.

use super::bridge::H2Source;
use super::buf::{self, Buf};
use super::chunked::{Chunked, Piece};
use super::codec::BodyKind;
use super::exchange::Upload;
use crate::backend::conns::Conn;
use bytes::Bytes;
use http::header::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Called once the response body has been read to its end (cleanly or
/// not): gets the connection back when it may serve another request.
pub type Release = Box<dyn FnOnce(Option<Conn>) + Send>;

/// The rest of a request still being sent while its answer streams back
/// (see `exchange::Upload`).
pub struct Sending {
    pub upload: Upload,
    pub head: Vec<u8>,
    pub source: H2Source,
}

/// A backend's HTTP/1 response body as HTTP/2 frames.
pub struct ResponseBody {
    conn: Option<Conn>,
    sending: Sending,
    buf: Buf,
    left: BodyKind,
    chunked: Chunked,
    trailer: Vec<u8>,
    /// The backend keeps the connection open after this response.
    reusable: bool,
    release: Option<Release>,
    sent: u64,
}

impl ResponseBody {
    /// `buf.unread()` starts at the body's first byte.
    pub fn new(
        conn: Conn,
        buf: Buf,
        kind: BodyKind,
        reusable: bool,
        sending: Sending,
        release: Release,
    ) -> ResponseBody {
        ResponseBody {
            conn: Some(conn),
            sending,
            buf,
            left: kind,
            chunked: Chunked::new(1 << 20),
            trailer: Vec::new(),
            reusable,
            release: Some(release),
            sent: 0,
        }
    }

    /// Body bytes passed on so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    fn end(&mut self, clean: bool) {
        let conn = self.conn.take();
        if let Some(release) = self.release.take() {
            let keep =
                clean && self.reusable && self.sending.upload.body_done && self.buf.is_empty();
            release(conn.filter(|_| keep));
        }
        self.buf.release();
    }

    fn trailers(&self) -> Option<HeaderMap> {
        super::h2_heads::trailers(&self.trailer).ok().flatten()
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if let (Some(conn), false) = (this.conn.as_mut(), this.sending.upload.finished()) {
                let s = &mut this.sending;
                if let Err(e) =
                    s.upload
                        .poll_send(cx, &mut conn.stream, &s.head, &mut s.source, &mut ())
                {
                    tracing::debug!(error = ?e, "request body failed mid-answer");
                    s.upload.write_failed = true;
                }
            }
            // Bytes to skip (framing, trailer), then data, then whether the
            // body ended.
            let avail = this.buf.unread();
            let (skip, data, ended) = match &mut this.left {
                BodyKind::None => (0, 0, true),
                BodyKind::Length(n) => {
                    let k = (avail.len() as u64).min(*n) as usize;
                    *n -= k as u64;
                    (0, k, *n == 0)
                }
                BodyKind::Close => (0, avail.len(), false),
                BodyKind::Chunked => {
                    let (mut at, mut data, mut ended) = (0, 0, false);
                    while at < avail.len() {
                        let s = match this.chunked.step(&avail[at..]) {
                            Ok(s) => s,
                            Err(r) => {
                                this.end(false);
                                return Poll::Ready(Some(Err(r.reason.into())));
                            }
                        };
                        if s.piece == Piece::Data && s.len > 0 {
                            data = s.len;
                            break;
                        }
                        if s.piece == Piece::Trailer {
                            this.trailer.extend_from_slice(&avail[at..at + s.len]);
                        }
                        at += s.len;
                        if s.done {
                            ended = true;
                            break;
                        }
                        if s.len == 0 {
                            break;
                        }
                    }
                    (at, data, ended)
                }
            };
            this.buf.consume(skip);
            if data > 0 {
                let frame = Bytes::copy_from_slice(&this.buf.unread()[..data]);
                this.buf.consume(data);
                this.sent += data as u64;
                if ended {
                    this.end(true);
                }
                return Poll::Ready(Some(Ok(Frame::data(frame))));
            }
            if ended {
                let trailers = this.trailers();
                this.end(true);
                return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
            }
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            if !this.buf.reserve(buf::BODY / 4, buf::BODY) {
                this.end(false);
                return Poll::Ready(Some(Err("response buffer full".into())));
            }
            match this.buf.poll_read(cx, &mut conn.stream) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) if this.left == BodyKind::Close => {
                    this.end(true);
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    this.end(false);
                    return Poll::Ready(Some(Err("backend broke off mid-body".into())));
                }
                Poll::Ready(Ok(_)) => {}
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == BodyKind::None
    }

    fn size_hint(&self) -> SizeHint {
        match self.left {
            BodyKind::None => SizeHint::with_exact(0),
            BodyKind::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // Dropped before its end (the client reset the stream): the
        // connection holds an unread response and is closed.
        self.end(false);
    }
}
