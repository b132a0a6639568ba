//! Response heads from backends: parsed by httparse, framed by RFC 9112
//! section 6.3 (a HEAD, 1xx, 204 or 304 answer has no body; the last
//! transfer coding decides; differing Content-Length values are refused).

use super::codec::{
    content_length, find_head_end, tokens, BodyKind, Field, Kind, Span, Version,
    MAX_RESPONSE_FIELDS,
};

/// A parsed response head; spans point into the buffer given to
/// [`parse_response`].
#[derive(Debug, Default)]
pub struct ResponseHead {
    pub len: usize,
    pub version: Version,
    pub status: u16,
    pub reason: Span,
    pub fields: Vec<Field>,
    pub body: BodyKind,
    /// The backend's connection may serve another request.
    pub keep_alive: bool,
    /// A 101's Upgrade field.
    pub upgrade: Option<Span>,
    /// The Content-Length value as received, for answers without a body
    /// (HEAD, 304) that still announce one.
    pub length: Option<u64>,
    pub connection_names: bool,
}

impl ResponseHead {
    pub fn new() -> ResponseHead {
        ResponseHead {
            fields: Vec::with_capacity(16),
            ..Default::default()
        }
    }

    pub fn informational(&self) -> bool {
        (100..200).contains(&self.status)
    }

    fn reset(&mut self) {
        let mut fields = std::mem::take(&mut self.fields);
        fields.clear();
        *self = ResponseHead {
            fields,
            ..Default::default()
        };
    }
}

/// Why a backend's answer cannot be passed on (the client gets 502).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadResponse(pub &'static str);

impl std::fmt::Display for BadResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for BadResponse {}

/// Parses a response head at the start of `buf`; `Ok(false)` when it is
/// not complete yet. `head_request`: the request was HEAD (no body follows
/// whatever the head says).
pub fn parse_response(
    buf: &[u8],
    head: &mut ResponseHead,
    scanned: &mut usize,
    max_head: usize,
    head_request: bool,
) -> Result<bool, BadResponse> {
    let Some(end) = find_head_end(buf, *scanned) else {
        *scanned = buf.len();
        if buf.len() > max_head {
            return Err(BadResponse("response head too large"));
        }
        return Ok(false);
    };
    if end > max_head {
        return Err(BadResponse("response head too large"));
    }
    *scanned = 0;
    head.reset();
    let mut fields = [httparse::EMPTY_HEADER; MAX_RESPONSE_FIELDS];
    let mut resp = httparse::Response::new(&mut fields);
    match resp.parse(&buf[..end]) {
        Ok(httparse::Status::Complete(n)) if n == end => {}
        Ok(_) => return Err(BadResponse("malformed response head")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(BadResponse("too many response header fields"))
        }
        Err(_) => return Err(BadResponse("malformed response head")),
    }
    head.len = end;
    head.version = match resp.version {
        Some(0) => Version::Http10,
        _ => Version::Http11,
    };
    head.status = resp.code.unwrap_or(0);
    if !(100..=999).contains(&head.status) {
        return Err(BadResponse("invalid status code"));
    }
    head.reason = Span::of(buf, resp.reason.unwrap_or_default().as_bytes());
    let (mut close, mut keep_alive) = (false, false);
    let mut length: Option<u64> = None;
    let mut te = None;
    for f in resp.headers.iter() {
        let kind = Kind::of(f.name.as_bytes());
        match kind {
            Kind::ContentLength => {
                let n = content_length(f.value)
                    .ok_or(BadResponse("invalid Content-Length in the response"))?;
                if length.is_some_and(|m| m != n) {
                    return Err(BadResponse("conflicting Content-Length values"));
                }
                length = Some(n);
            }
            // The last coding decides (RFC 9112 section 6.3).
            Kind::TransferEncoding => {
                te = tokens(f.value)
                    .last()
                    .map(|t| t.eq_ignore_ascii_case(b"chunked"))
            }
            Kind::Connection => {
                for t in tokens(f.value) {
                    if t.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if t.eq_ignore_ascii_case(b"keep-alive") {
                        keep_alive = true;
                    } else if !t.eq_ignore_ascii_case(b"upgrade") {
                        head.connection_names = true;
                    }
                }
            }
            Kind::Upgrade => head.upgrade = Some(Span::of(buf, f.value)),
            _ => {}
        }
        head.fields.push(Field {
            name: Span::of(buf, f.name.as_bytes()),
            value: Span::of(buf, f.value),
            kind,
        });
    }
    head.length = length;
    let bodiless = head_request || head.informational() || matches!(head.status, 204 | 304);
    head.body = match (te, length) {
        _ if bodiless => BodyKind::None,
        (Some(true), _) => BodyKind::Chunked,
        // A coding other than chunked last: the body runs until close.
        (Some(false), _) => BodyKind::Close,
        (None, Some(0)) => BodyKind::None,
        (None, Some(n)) => BodyKind::Length(n),
        (None, None) => BodyKind::Close,
    };
    head.keep_alive = match head.version {
        Version::Http11 => !close,
        Version::Http10 => keep_alive && !close,
    } && head.body != BodyKind::Close;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(s: &str, head_request: bool) -> Result<ResponseHead, BadResponse> {
        let mut head = ResponseHead::new();
        let mut scanned = 0;
        assert!(parse_response(
            s.as_bytes(),
            &mut head,
            &mut scanned,
            4096,
            head_request
        )?);
        Ok(head)
    }

    #[test]
    fn response_framing() {
        let r = response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false).unwrap();
        assert_eq!(
            (r.status, r.body, r.keep_alive),
            (200, BodyKind::Length(5), true)
        );
        let r = response(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(r.body, BodyKind::Chunked);
        let r = response("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false).unwrap();
        assert_eq!((r.body, r.keep_alive), (BodyKind::Close, false));
        let r = response("HTTP/1.1 200 OK\r\n\r\n", false).unwrap();
        assert_eq!((r.body, r.keep_alive), (BodyKind::Close, false));
        let r = response("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", true).unwrap();
        assert_eq!((r.body, r.length), (BodyKind::None, Some(1000)));
        let r = response(
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(r.body, BodyKind::None);
        let r = response("HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n", false).unwrap();
        assert!(r.informational());
        let r = response("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false).unwrap();
        assert!(!r.keep_alive);
        let r = response(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
            false,
        )
        .unwrap();
        assert!(!r.keep_alive);
        assert!(response(
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            false
        )
        .is_err());
        assert!(response("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false).is_err());
        assert!(response("this is not HTTP\r\n\r\n", false).is_err());
        let mut head = ResponseHead::new();
        let mut scanned = 0;
        let big = format!("HTTP/1.1 200 OK\r\nX: {}", "y".repeat(100));
        assert!(parse_response(big.as_bytes(), &mut head, &mut scanned, 64, false).is_err());
    }
}
