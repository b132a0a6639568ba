//! The engine's backend side for requests that did not come over HTTP/1:
//! an HTTP/2 request (from hyper) becomes an HTTP/1.1 request head and a
//! body `Source` (a body of unknown length is sent chunked); its answer
//! goes back through `bridge_body`.

use super::body::{Source, SourceError, TOO_LARGE};
use super::chunked;
use super::codec::{valid_host, BodyKind, Kind};
use super::write::{number, Forwarded, Rewrite};
use bytes::Bytes;
use http::request::Parts;
use http_body::Body;
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{Context, Poll};

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
    rw: &Rewrite<'_>,
) {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        rw.path.unwrap_or(
            parts
                .uri
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .as_bytes(),
        ),
    );
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut te_trailers = false;
    for (name, value) in parts.headers.iter() {
        match Kind::of(name.as_str().as_bytes()) {
            Kind::Other
                if (rw.drop_authorization && name == http::header::AUTHORIZATION)
                    || rw.rules.is_some_and(|r| r.drops(name.as_str().as_bytes())) => {}
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
    if let Some(h) = rw.host.or(host.map(str::as_bytes)) {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(h);
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
    if te_trailers && rw.te_trailers {
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
    out.extend_from_slice(b"\r\n");
    if let Some(rules) = rw.rules {
        for (n, v) in rules.set.iter().chain(&rules.add) {
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
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
        /// Data bytes the body may still have (the route's max_body_bytes).
        allowed: u64,
    },
}

impl H2Source {
    /// `max_body`: the data bytes the body may have (0: any).
    pub fn stream(body: Incoming, framing: BodyKind, max_body: u64) -> H2Source {
        H2Source::Stream {
            body,
            chunked: framing == BodyKind::Chunked,
            out: Vec::new(),
            pos: 0,
            ended: framing == BodyKind::None,
            allowed: if max_body == 0 { u64::MAX } else { max_body },
        }
    }

    /// Reads the body whole if it is at most `max` bytes (to keep it for
    /// replays); a larger one streams, the part read first.
    pub async fn keep(
        body: Incoming,
        framing: BodyKind,
        max: usize,
        max_body: u64,
    ) -> Result<H2Source, SourceError> {
        use http_body_util::BodyExt;
        if framing == BodyKind::None {
            return Ok(H2Source::Kept {
                bytes: Bytes::new(),
                pos: 0,
            });
        }
        if matches!(framing, BodyKind::Length(n) if n > max as u64) {
            return Ok(H2Source::stream(body, framing, max_body));
        }
        let mut allowed = if max_body == 0 { u64::MAX } else { max_body };
        let mut body = body;
        let mut kept = Vec::new();
        let chunked = framing == BodyKind::Chunked;
        loop {
            match body.frame().await {
                None => break,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        allowed = allowed
                            .checked_sub(data.len() as u64)
                            .ok_or(SourceError::Refused(TOO_LARGE))?;
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
                            allowed,
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
                allowed,
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
                        Ok(data) if data.len() as u64 > *allowed => {
                            return Poll::Ready(Err(SourceError::Refused(TOO_LARGE)))
                        }
                        Ok(data) if *chunked => {
                            *allowed -= data.len() as u64;
                            if !data.is_empty() {
                                chunked::size_line(out, data.len());
                                out.extend_from_slice(&data);
                                out.extend_from_slice(b"\r\n");
                            }
                        }
                        Ok(data) => {
                            *allowed -= data.len() as u64;
                            out.extend_from_slice(&data)
                        }
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

    /// A kept body starts again; one that streams once cannot.
    fn rewind(&mut self) -> bool {
        match self {
            H2Source::Kept { pos, .. } => {
                *pos = 0;
                true
            }
            H2Source::Stream { .. } => false,
        }
    }
}
