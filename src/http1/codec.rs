//! The HTTP/1 codec: bytes in, a checked head out. Pure code: no I/O, no
//! allocation once a connection's `RequestHead` exists (its field list is
//! reused from request to request).
//!
//! A head is parsed once, by httparse (the parser hyper uses), when its end
//! is in the buffer: [`find_head_end`] scans only the bytes that arrived
//! since the last look, so a head that dribbles in byte by byte costs a
//! linear scan and one parse, not a parse per read. The strictness an edge
//! proxy needs, and httparse leaves out, is checked on httparse's own spans
//! in the same pass (RFC 9112; request smuggling lives in exactly these
//! gaps: two parsers that disagree on where a request ends):
//!
//! - every line ends in CRLF: httparse accepts a bare LF, so the two bytes
//!   before each field name and the last four of the head are checked;
//! - no obs-fold, no whitespace before a colon, no control characters but
//!   HTAB in values (httparse refuses these in requests by default);
//! - a request target of visible ASCII (httparse lets bytes >= 0x80 by),
//!   at most [`MAX_TARGET`] long (414); `*` only with OPTIONS; CONNECT 405;
//! - at most [`MAX_FIELDS`] fields (431);
//! - HTTP/1.1 has exactly one Host, HTTP/1.0 at most one, and a Host (or an
//!   absolute-form authority) is one host with an optional port: no list,
//!   no userinfo, no spaces; an absolute-form authority must agree with Host;
//! - Transfer-Encoding only as exactly `chunked`, only in HTTP/1.1, never
//!   with Content-Length; Content-Length digits only, repeated values equal.
//!
//! Every field is classified as it is read (`Kind`), so the writers in
//! `write` know which fields are hop-by-hop or rewritten without looking
//! their names up again.

/// The most header fields a request may carry (as Envoy's default).
pub const MAX_FIELDS: usize = 100;
/// The most header fields a backend's response may carry.
pub const MAX_RESPONSE_FIELDS: usize = 256;
/// The longest request target (nginx's default large header buffer).
pub const MAX_TARGET: usize = 8 * 1024;
/// The longest client `X-Request-Id` kept; a longer one is replaced, so a
/// client cannot make every log line and error body carry kilobytes.
pub const MAX_CLIENT_ID: usize = 128;

/// Why a request is refused: the status and a short reason for the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    pub status: u16,
    pub reason: &'static str,
}

pub const fn bad(reason: &'static str) -> Reject {
    Reject {
        status: 400,
        reason,
    }
}

/// A byte range of the buffer a head was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub(super) fn of(buf: &[u8], part: &[u8]) -> Span {
        // httparse hands out subslices of `buf`: their offset is exact.
        let start = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
        Span {
            start: start as u32,
            end: (start + part.len()) as u32,
        }
    }

    pub fn get<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        buf.get(self.start as usize..self.end as usize)
            .unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.start >= self.end
    }
}

/// What a header field is to a proxy, decided once by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Other,
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    KeepAlive,
    ProxyConnection,
    Te,
    Trailer,
    Upgrade,
    Expect,
    XForwardedFor,
    XForwardedProto,
    XForwardedHost,
    XRequestId,
}

impl Kind {
    pub fn of(name: &[u8]) -> Kind {
        // Dispatch on length first: most names are compared with nothing.
        let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
        match name.len() {
            2 if is(b"te") => Kind::Te,
            4 if is(b"host") => Kind::Host,
            6 if is(b"expect") => Kind::Expect,
            7 if is(b"trailer") => Kind::Trailer,
            7 if is(b"upgrade") => Kind::Upgrade,
            10 if is(b"connection") => Kind::Connection,
            10 if is(b"keep-alive") => Kind::KeepAlive,
            12 if is(b"x-request-id") => Kind::XRequestId,
            14 if is(b"content-length") => Kind::ContentLength,
            15 if is(b"x-forwarded-for") => Kind::XForwardedFor,
            16 if is(b"x-forwarded-host") => Kind::XForwardedHost,
            16 if is(b"proxy-connection") => Kind::ProxyConnection,
            17 if is(b"transfer-encoding") => Kind::TransferEncoding,
            17 if is(b"x-forwarded-proto") => Kind::XForwardedProto,
            _ => Kind::Other,
        }
    }

    /// Headers that describe one connection and never cross a proxy (RFC
    /// 9110 section 7.6.1), besides those named in Connection.
    pub fn hop_by_hop(self) -> bool {
        matches!(
            self,
            Kind::Connection
                | Kind::KeepAlive
                | Kind::ProxyConnection
                | Kind::Te
                | Kind::Trailer
                | Kind::TransferEncoding
                | Kind::Upgrade
        )
    }
}

/// One header field: spans of its name and its value (OWS trimmed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: Span,
    pub value: Span,
    pub kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Version {
    Http10,
    #[default]
    Http11,
}

/// The methods sluice treats specially; any other token is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    #[default]
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Trace,
    Patch,
    Connect,
    Other,
}

impl Method {
    pub(super) fn of(m: &[u8]) -> Method {
        match m {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"TRACE" => Method::Trace,
            b"PATCH" => Method::Patch,
            b"CONNECT" => Method::Connect,
            _ => Method::Other,
        }
    }

    /// Methods the spec lets sluice replay (RFC 9110 section 9.2.2).
    pub fn idempotent(self) -> bool {
        matches!(
            self,
            Method::Get
                | Method::Head
                | Method::Options
                | Method::Put
                | Method::Delete
                | Method::Trace
        )
    }
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyKind {
    #[default]
    None,
    Length(u64),
    Chunked,
    /// Until the backend closes (responses only).
    Close,
}

/// Where the head that starts at `buf[0]` ends (just past its empty line),
/// if it is complete. `from` is how far an earlier call looked already.
/// Leading empty lines are the caller's to skip.
pub fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(2);
    for i in memchr::memchr_iter(b'\n', buf.get(start..)?) {
        let i = start + i;
        match buf.get(i + 1..i + 3) {
            Some([b'\r', b'\n']) => return Some(i + 3),
            Some([b'\n', _]) => return Some(i + 2),
            None if buf.get(i + 1) == Some(&b'\n') => return Some(i + 2),
            _ => {}
        }
    }
    None
}

/// How many bytes of empty lines (CRLF) precede a request line (RFC 9112
/// section 2.2 lets a server ignore them).
pub fn leading_empty_lines(buf: &[u8]) -> usize {
    let mut n = 0;
    while buf[n..].starts_with(b"\r\n") {
        n += 2;
    }
    n
}

fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// A Content-Length value: digits, or a list of equal digit strings.
pub fn content_length(value: &[u8]) -> Option<u64> {
    let mut n = None;
    for v in value.split(|&b| b == b',') {
        let v = parse_length(trim(v))?;
        if n.is_some_and(|m| m != v) {
            return None;
        }
        n = Some(v);
    }
    n
}

pub fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// The comma-separated tokens of a field value, trimmed, empty ones left out.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|t| !t.is_empty())
}

/// Whether `v` is one host with an optional port (RFC 3986 host, without
/// the sub-delims no real host uses): a name of letters, digits, `-._~`
/// and %-escapes, or an IP literal in brackets. No list, no userinfo, no
/// space.
pub fn valid_host(v: &[u8]) -> bool {
    let (host, port) = if v.first() == Some(&b'[') {
        let Some(close) = v.iter().position(|&b| b == b']') else {
            return false;
        };
        let inner = &v[1..close];
        if inner.is_empty()
            || !inner
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
        {
            return false;
        }
        (&v[..=close], &v[close + 1..])
    } else {
        match v.iter().position(|&b| b == b':') {
            Some(i) => (&v[..i], &v[i..]),
            None => (v, &v[v.len()..]),
        }
    };
    let name_ok = host.first() == Some(&b'[')
        || (!host.is_empty()
            && host.iter().all(|&b| {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'%')
            }));
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    name_ok && port_ok
}

pub use super::request_head::{parse_request, RequestHead};
pub use super::response_head::{parse_response, BadResponse, ResponseHead};
