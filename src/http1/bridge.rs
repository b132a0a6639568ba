//! The engine's backend side for requests that did not come over HTTP/1:
//! an HTTP/2 request (from hyper) becomes an HTTP/1.1 request head and a
//! body `Source`, and the backend's HTTP/1 response body becomes HTTP/2
//! data and trailers frames.
//!
//! Bodies are re-framed here, since the two protocols frame differently:
//! a request body of unknown length is sent chunked, and a chunked
//! response's trailer section (gRPC's `grpc-status`) becomes a trailers
//! frame.

use super::body::{Source, SourceError};
use super::buf::{self, Buf};
use super::chunked::{self, Chunked, Piece};
use super::codec::{valid_host, BodyKind, Kind};
use super::exchange::Upload;
use super::write::{number, Forwarded};
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::net::TcpStream;

/// The host an HTTP/2 request names: `:authority`, else Host. Refused
/// (None) when it is not one host with an optional port.
pub fn request_host(parts: &Parts) -> Result<Option<&str>, &'static str> {
    let host = match parts.uri.authority() {
        Some(a) => Some(a.as_str()),
        None => match parts.headers.get(http::header::HOST) {
            Some(h) => Some(h.to_str().map_err(|_| "invalid Host header")?),
            None => None,
        },
    };
    match host {
        Some(h) if !valid_host(h.as_bytes()) => Err("invalid Host header"),
        _ => Ok(host),
    }
}

/// How an HTTP/2 request's body is framed towards the backend.
pub fn request_framing(parts: &Parts, body: &Incoming) -> BodyKind {
    let length = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| super::codec::content_length(v.as_bytes()));
    match length {
        Some(0) => BodyKind::None,
        Some(n) => BodyKind::Length(n),
        None if body.is_end_stream() => BodyKind::None,
        None => BodyKind::Chunked,
    }
}

/// Writes the HTTP/1.1 request head for an HTTP/2 request: its fields but
/// the connection-specific ones, Host from `:authority`, the framing, the
/// forwarding fields, and `TE: trailers` when the client takes trailers
/// (gRPC needs it; the backend then sends them chunked).
pub fn request_head(
    out: &mut Vec<u8>,
    parts: &Parts,
    host: Option<&str>,
    framing: BodyKind,
    fwd: &Forwarded<'_>,
) {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        parts
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .as_bytes(),
    );
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut te_trailers = false;
    for (name, value) in parts.headers.iter() {
        match Kind::of(name.as_str().as_bytes()) {
            Kind::Other => {
                out.extend_from_slice(name.as_str().as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Kind::Te => {
                te_trailers |= super::codec::tokens(value.as_bytes())
                    .any(|t| t.eq_ignore_ascii_case(b"trailers"));
            }
            _ => {}
        }
    }
    if let Some(h) = host {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        BodyKind::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            number(out, n);
            out.extend_from_slice(b"\r\n");
        }
        BodyKind::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        BodyKind::None | BodyKind::Close => {}
    }
    if te_trailers {
        out.extend_from_slice(b"te: trailers\r\n");
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    let mut first = true;
    for v in parts.headers.get_all("x-forwarded-for") {
        if !first {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(v.as_bytes());
        first = false;
    }
    if !first {
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(fwd.peer.to_string().as_bytes());
    out.extend_from_slice(b"\r\nx-forwarded-proto: ");
    out.extend_from_slice(if fwd.https { b"https" } else { b"http" });
    out.extend_from_slice(b"\r\n");
    if let Some(h) = host {
        out.extend_from_slice(b"x-forwarded-host: ");
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"x-request-id: ");
    out.extend_from_slice(fwd.request_id);
    out.extend_from_slice(b"\r\n\r\n");
}

/// An HTTP/2 request body as an upload source: kept whole (replayable), or
/// streamed once, chunk-framed when its length is unknown.
pub enum H2Source {
    Kept {
        bytes: Bytes,
        pos: usize,
    },
    Stream {
        body: Incoming,
        chunked: bool,
        out: Vec<u8>,
        pos: usize,
        ended: bool,
    },
}

impl H2Source {
    pub fn stream(body: Incoming, framing: BodyKind) -> H2Source {
        H2Source::Stream {
            body,
            chunked: framing == BodyKind::Chunked,
            out: Vec::new(),
            pos: 0,
            ended: framing == BodyKind::None,
        }
    }

    /// Reads the body whole if it is at most `max` bytes (to keep it for
    /// replays); a larger one streams, the part read first.
    pub async fn keep(
        body: Incoming,
        framing: BodyKind,
        max: usize,
    ) -> Result<H2Source, SourceError> {
        use http_body_util::BodyExt;
        if framing == BodyKind::None {
            return Ok(H2Source::Kept {
                bytes: Bytes::new(),
                pos: 0,
            });
        }
        if matches!(framing, BodyKind::Length(n) if n > max as u64) {
            return Ok(H2Source::stream(body, framing));
        }
        let mut body = body;
        let mut kept = Vec::new();
        let chunked = framing == BodyKind::Chunked;
        loop {
            match body.frame().await {
                None => break,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if chunked && !data.is_empty() {
                            chunked::size_line(&mut kept, data.len());
                            kept.extend_from_slice(&data);
                            kept.extend_from_slice(b"\r\n");
                        } else {
                            kept.extend_from_slice(&data);
                        }
                    }
                    if kept.len() > max {
                        return Ok(H2Source::Stream {
                            body,
                            chunked,
                            out: kept,
                            pos: 0,
                            ended: false,
                        });
                    }
                }
                Some(Err(_)) => return Err(SourceError::Gone),
            }
        }
        if chunked {
            kept.extend_from_slice(b"0\r\n\r\n");
        }
        Ok(H2Source::Kept {
            bytes: kept.into(),
            pos: 0,
        })
    }
}

impl Source<()> for H2Source {
    fn poll_data(&mut self, cx: &mut Context<'_>, _: &mut ()) -> Poll<Result<&[u8], SourceError>> {
        match self {
            H2Source::Kept { bytes, pos } => Poll::Ready(Ok(&bytes[*pos..])),
            H2Source::Stream {
                body,
                chunked,
                out,
                pos,
                ended,
            } => loop {
                if *pos < out.len() {
                    return Poll::Ready(Ok(&out[*pos..]));
                }
                out.clear();
                *pos = 0;
                if *ended {
                    return Poll::Ready(Ok(&[]));
                }
                match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Err(_))) => return Poll::Ready(Err(SourceError::Gone)),
                    Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) if *chunked => {
                            if !data.is_empty() {
                                chunked::size_line(out, data.len());
                                out.extend_from_slice(&data);
                                out.extend_from_slice(b"\r\n");
                            }
                        }
                        Ok(data) => out.extend_from_slice(&data),
                        Err(frame) => {
                            if let (Ok(trailers), true) = (frame.into_trailers(), *chunked) {
                                out.extend_from_slice(b"0\r\n");
                                for (name, value) in &trailers {
                                    out.extend_from_slice(name.as_str().as_bytes());
                                    out.extend_from_slice(b": ");
                                    out.extend_from_slice(value.as_bytes());
                                    out.extend_from_slice(b"\r\n");
                                }
                                out.extend_from_slice(b"\r\n");
                                *ended = true;
                            }
                        }
                    },
                    Poll::Ready(None) => {
                        if *chunked {
                            out.extend_from_slice(b"0\r\n\r\n");
                        }
                        *ended = true;
                    }
                }
            },
        }
    }

    fn sent(&mut self, n: usize) {
        match self {
            H2Source::Kept { pos, .. } | H2Source::Stream { pos, .. } => *pos += n,
        }
    }
}

impl H2Source {
    /// Starts again from the first byte for another try; false for a
    /// body that streams once.
    pub fn rewind(&mut self) -> bool {
        match self {
            H2Source::Kept { pos, .. } => {
                *pos = 0;
                true
            }
            H2Source::Stream { .. } => false,
        }
    }
}

/// Called once the response body has been read to its end (cleanly or
/// not): gets the connection back when it may serve another request.
pub type Release = Box<dyn FnOnce(Option<TcpStream>) + Send>;

/// The rest of a request still being sent while its answer streams back
/// (see `exchange::Upload`).
pub struct Sending {
    pub upload: Upload,
    pub head: Vec<u8>,
    pub source: H2Source,
}

/// A backend's HTTP/1 response body as HTTP/2 frames.
pub struct ResponseBody {
    stream: Option<TcpStream>,
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
        stream: TcpStream,
        buf: Buf,
        kind: BodyKind,
        reusable: bool,
        sending: Sending,
        release: Release,
    ) -> ResponseBody {
        ResponseBody {
            stream: Some(stream),
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
        let stream = self.stream.take();
        if let Some(release) = self.release.take() {
            let keep =
                clean && self.reusable && self.sending.upload.body_done && self.buf.is_empty();
            release(stream.filter(|_| keep));
        }
        self.buf.release();
    }

    fn trailers(&self) -> Option<HeaderMap> {
        let mut fields = [httparse::EMPTY_HEADER; 64];
        let Ok(httparse::Status::Complete((_, fields))) =
            httparse::parse_headers(&self.trailer, &mut fields)
        else {
            return None;
        };
        let mut map = HeaderMap::new();
        for f in fields {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(f.name.as_bytes()),
                HeaderValue::from_bytes(f.value),
            ) {
                map.append(n, v);
            }
        }
        (!map.is_empty()).then_some(map)
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
            if let (Some(stream), false) = (this.stream.as_mut(), this.sending.upload.finished()) {
                let s = &mut this.sending;
                if let Err(e) = s
                    .upload
                    .poll_send(cx, stream, &s.head, &mut s.source, &mut ())
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
            let Some(stream) = this.stream.as_mut() else {
                return Poll::Ready(None);
            };
            if !this.buf.reserve(buf::BODY / 4, buf::BODY) {
                this.end(false);
                return Poll::Ready(Some(Err("response buffer full".into())));
            }
            match this.buf.poll_read(cx, stream) {
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
