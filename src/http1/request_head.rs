//! Request heads: parsed once by httparse when the head is complete, and
//! checked on httparse's spans in the same pass (see `codec`).

use super::codec::{
    bad, content_length, find_head_end, leading_empty_lines, tokens, valid_host, BodyKind, Field,
    Kind, Method, Reject, Span, Version, MAX_CLIENT_ID, MAX_FIELDS, MAX_TARGET,
};

/// A parsed request head. Spans point into the buffer given to
/// [`parse_request`], starting at its first byte.
#[derive(Debug, Default)]
pub struct RequestHead {
    /// Bytes the head took, leading empty lines included.
    pub len: usize,
    pub method: Method,
    pub method_span: Span,
    pub version: Version,
    /// The request target as sent.
    pub target: Span,
    /// The origin-form path and query (for an absolute-form target, the
    /// part after the authority; `*` for OPTIONS *).
    pub path: Span,
    /// An absolute-form target's path was empty: the origin form is `/`
    /// followed by `path` (which is empty or a query).
    pub path_needs_slash: bool,
    /// The absolute-form target's authority.
    pub authority: Option<Span>,
    /// The Host field's value (None when absent or empty).
    pub host: Option<Span>,
    pub fields: Vec<Field>,
    pub body: BodyKind,
    /// The client's connection may serve another request after this one.
    pub keep_alive: bool,
    /// A WebSocket opening handshake: the Upgrade field's value.
    pub upgrade: Option<Span>,
    pub expect_continue: bool,
    /// The client's X-Request-Id, when usable.
    pub request_id: Option<Span>,
    /// `TE: trailers`: the client takes trailers.
    pub te_trailers: bool,
    /// Connection names fields besides close, keep-alive and upgrade: those
    /// are hop-by-hop too (see `Connection::names`).
    pub connection_names: bool,
}

impl RequestHead {
    pub fn new() -> RequestHead {
        RequestHead {
            fields: Vec::with_capacity(16),
            ..Default::default()
        }
    }

    /// The values of every field of `kind`, in order.
    pub fn values<'b>(&'b self, buf: &'b [u8], kind: Kind) -> impl Iterator<Item = &'b [u8]> {
        self.fields
            .iter()
            .filter(move |f| f.kind == kind)
            .map(move |f| f.value.get(buf))
    }

    /// The first value of a field by name (any case).
    pub fn value<'b>(&self, buf: &'b [u8], name: &[u8]) -> Option<&'b [u8]> {
        self.fields
            .iter()
            .find(|f| f.name.get(buf).eq_ignore_ascii_case(name))
            .map(|f| f.value.get(buf))
    }

    /// The host the client asked for: the absolute-form authority, else Host.
    pub fn host_span(&self) -> Option<Span> {
        self.authority.or(self.host)
    }

    fn reset(&mut self) {
        let mut fields = std::mem::take(&mut self.fields);
        fields.clear();
        *self = RequestHead {
            fields,
            ..Default::default()
        };
    }
}

fn httparse_reject(e: httparse::Error) -> Reject {
    use httparse::Error::*;
    match e {
        TooManyHeaders => Reject {
            status: 431,
            reason: "too many header fields",
        },
        Version => bad("unsupported HTTP version"),
        Token => bad("invalid method or request target"),
        HeaderName => bad("invalid header name"),
        HeaderValue => bad("invalid character in a header value"),
        NewLine => bad("malformed line ending"),
        Status => bad("malformed request line"),
    }
}

/// Parses and checks the request head at the start of `buf` into `head`.
/// `Ok(false)`: the head is not complete yet (`scanned` remembers how far
/// the end was looked for); `Ok(true)`: `head` holds it.
pub fn parse_request(
    buf: &[u8],
    head: &mut RequestHead,
    scanned: &mut usize,
    max_head: usize,
) -> Result<bool, Reject> {
    let skip = leading_empty_lines(buf);
    let rest = &buf[skip..];
    if rest.first() == Some(&b'\n') {
        return Err(bad("bare LF line ending"));
    }
    let Some(end) = find_head_end(rest, scanned.saturating_sub(skip)) else {
        *scanned = buf.len();
        if rest.len() > max_head {
            return Err(too_large());
        }
        return Ok(false);
    };
    if end > max_head {
        return Err(too_large());
    }
    *scanned = 0;
    head.reset();
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut fields);
    let bytes = &buf[..skip + end];
    match req.parse(&bytes[skip..]) {
        Ok(httparse::Status::Complete(n)) if n == end => {}
        Ok(_) => return Err(bad("malformed request head")),
        Err(e) => return Err(httparse_reject(e)),
    }
    head.len = skip + end;
    // Line endings: the head ends in CRLFCRLF (or the request line's CRLF
    // and the empty line's), and each field name follows a CRLF.
    if !bytes.ends_with(b"\r\n\r\n") {
        return Err(bad("bare LF line ending"));
    }
    let method = req.method.unwrap_or_default().as_bytes();
    head.method_span = Span::of(bytes, method);
    head.method = Method::of(method);
    head.version = match req.version {
        Some(0) => Version::Http10,
        _ => Version::Http11,
    };
    let target = req.path.unwrap_or_default().as_bytes();
    head.target = Span::of(bytes, target);
    // Fields first: a refusal of the target still names the client's
    // X-Request-Id.
    for f in req.headers.iter() {
        let name = Span::of(bytes, f.name.as_bytes());
        let s = name.start as usize;
        if s < 2 || &bytes[s - 2..s] != b"\r\n" {
            return Err(bad("bare LF line ending"));
        }
        head.fields.push(Field {
            name,
            value: Span::of(bytes, f.value),
            kind: Kind::of(f.name.as_bytes()),
        });
    }
    check_target(bytes, head, target)?;
    check_fields(bytes, head)?;
    Ok(true)
}

fn too_large() -> Reject {
    Reject {
        status: 431,
        reason: "the request head is too large",
    }
}

fn check_target(buf: &[u8], head: &mut RequestHead, target: &[u8]) -> Result<(), Reject> {
    if target.len() > MAX_TARGET {
        return Err(Reject {
            status: 414,
            reason: "request target too long",
        });
    }
    if !target.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
        return Err(bad("invalid request target"));
    }
    if head.method == Method::Connect {
        return Err(Reject {
            status: 405,
            reason: "CONNECT is not supported",
        });
    }
    head.path = head.target;
    match target {
        [b'/', ..] => Ok(()),
        b"*" if head.method == Method::Options => Ok(()),
        b"*" => Err(bad("request target * is only for OPTIONS")),
        _ => {
            // Absolute form: scheme://authority[path-abempty][?query].
            let lower_starts =
                |p: &[u8]| target.len() >= p.len() && target[..p.len()].eq_ignore_ascii_case(p);
            let after = if lower_starts(b"http://") {
                7
            } else if lower_starts(b"https://") {
                8
            } else {
                return Err(bad("invalid request target"));
            };
            let rest = &target[after..];
            let auth_len = rest
                .iter()
                .position(|&b| b == b'/' || b == b'?' || b == b'#')
                .unwrap_or(rest.len());
            let authority = &rest[..auth_len];
            if !valid_host(authority) {
                return Err(bad("invalid authority in the request target"));
            }
            head.authority = Some(Span::of(buf, authority));
            let path = &rest[auth_len..];
            head.path = Span::of(buf, path);
            head.path_needs_slash = path.first() != Some(&b'/');
            Ok(())
        }
    }
}

fn check_fields(buf: &[u8], head: &mut RequestHead) -> Result<(), Reject> {
    let http11 = head.version == Version::Http11;
    let mut hosts = 0;
    let mut length: Option<u64> = None;
    let mut transfer_encodings = 0;
    let mut chunked = true;
    let (mut close, mut keep_alive, mut conn_upgrade) = (false, false, false);
    let mut websocket = None;
    for f in &head.fields {
        let value = f.value.get(buf);
        match f.kind {
            Kind::Host => {
                hosts += 1;
                if !value.is_empty() && !valid_host(value) {
                    return Err(bad("invalid Host header"));
                }
                if !value.is_empty() {
                    head.host = Some(f.value);
                }
            }
            Kind::ContentLength => {
                let n = content_length(value).ok_or(bad("invalid Content-Length"))?;
                if length.is_some_and(|m| m != n) {
                    return Err(bad("conflicting Content-Length values"));
                }
                length = Some(n);
            }
            Kind::TransferEncoding => {
                transfer_encodings += 1;
                chunked &= value.eq_ignore_ascii_case(b"chunked");
            }
            Kind::Connection => {
                for t in tokens(value) {
                    if t.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if t.eq_ignore_ascii_case(b"keep-alive") {
                        keep_alive = true;
                    } else if t.eq_ignore_ascii_case(b"upgrade") {
                        conn_upgrade = true;
                    } else {
                        head.connection_names = true;
                    }
                }
            }
            Kind::Upgrade
                if websocket.is_none()
                    && tokens(value).any(|t| t.eq_ignore_ascii_case(b"websocket")) =>
            {
                websocket = Some(f.value);
            }
            Kind::Expect => {
                head.expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
            }
            Kind::Te => {
                head.te_trailers |= tokens(value).any(|t| t.eq_ignore_ascii_case(b"trailers"));
            }
            Kind::XRequestId => {
                let usable = !value.is_empty()
                    && value.len() <= MAX_CLIENT_ID
                    && value.iter().all(|&b| (0x20..=0x7e).contains(&b));
                if head.request_id.is_none() && usable {
                    head.request_id = Some(f.value);
                }
            }
            _ => {}
        }
    }
    match (http11, hosts) {
        (true, 0) => return Err(bad("missing Host header")),
        (_, 2..) => return Err(bad("more than one Host header")),
        _ => {}
    }
    if let (Some(auth), Some(host)) = (head.authority, head.host) {
        if !auth.get(buf).eq_ignore_ascii_case(host.get(buf)) {
            return Err(bad("request target's authority disagrees with Host"));
        }
    }
    head.body = match (transfer_encodings, length) {
        (0, None | Some(0)) => BodyKind::None,
        (0, Some(n)) => BodyKind::Length(n),
        (_, Some(_)) => return Err(bad("both Transfer-Encoding and Content-Length")),
        (_, None) if !http11 => return Err(bad("Transfer-Encoding in an HTTP/1.0 request")),
        (1, None) if chunked => BodyKind::Chunked,
        _ => return Err(bad("Transfer-Encoding other than chunked")),
    };
    head.keep_alive = if http11 { !close } else { keep_alive && !close };
    // A WebSocket opening handshake (RFC 6455 section 4.1): an HTTP/1.1 GET
    // with Connection: upgrade and Upgrade: websocket. Other upgrades (h2c,
    // TLS) are not proxied: their fields go as hop-by-hop.
    if http11 && head.method == Method::Get && conn_upgrade {
        head.upgrade = websocket;
    }
    Ok(())
}

#[cfg(test)]
#[path = "request_head_tests.rs"]
mod tests;
