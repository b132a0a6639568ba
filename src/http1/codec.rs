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
    fn of(buf: &[u8], part: &[u8]) -> Span {
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
    fn of(m: &[u8]) -> Method {
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
    check_target(bytes, head, target)?;
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

    fn parse(s: &str) -> Result<RequestHead, Reject> {
        let mut head = RequestHead::new();
        let mut scanned = 0;
        match parse_request(s.as_bytes(), &mut head, &mut scanned, 65536)? {
            true => Ok(head),
            false => Err(Reject {
                status: 0,
                reason: "incomplete",
            }),
        }
    }

    fn status(s: &str) -> u16 {
        parse(s).map(|_| 200).unwrap_or_else(|r| r.status)
    }

    #[test]
    fn accepts_ordinary_requests() {
        let s = "GET /a?b=c HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n";
        let h = parse(s).unwrap();
        assert_eq!(h.body, BodyKind::None);
        assert_eq!(h.len, s.len());
        assert_eq!(h.path.get(s.as_bytes()), b"/a?b=c");
        assert_eq!(h.host.unwrap().get(s.as_bytes()), b"x");
        assert!(h.keep_alive);
        assert_eq!(h.fields.len(), 2);
        assert_eq!(h.fields[0].kind, Kind::Host);
        let h = parse("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n").unwrap();
        assert_eq!(h.body, BodyKind::Length(12));
        let h = parse("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n").unwrap();
        assert_eq!(h.body, BodyKind::Chunked);
        let h =
            parse("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n")
                .unwrap();
        assert_eq!(h.body, BodyKind::Length(5));
        let h = parse("GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(!h.keep_alive);
        let h = parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
        assert!(h.keep_alive);
        assert_eq!(
            status("GET http://x/ HTTP/1.1\r\nHost: x\r\nX-Empty:\r\n\r\n"),
            200
        );
        let h =
            parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
                .unwrap();
        assert!(h.upgrade.is_some());
        let h = parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        assert!(!h.keep_alive);
        let s = "\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let h = parse(s).unwrap();
        assert_eq!(h.len, s.len());
        assert_eq!(h.method_span.get(s.as_bytes()), b"GET");
    }

    #[test]
    fn absolute_form_and_asterisk() {
        let s = "GET http://Example.com:8080/p?q HTTP/1.1\r\nHost: example.com:8080\r\n\r\n";
        let h = parse(s).unwrap();
        assert_eq!(h.authority.unwrap().get(s.as_bytes()), b"Example.com:8080");
        assert_eq!(h.path.get(s.as_bytes()), b"/p?q");
        let s = "GET http://a?q HTTP/1.1\r\nHost: a\r\n\r\n";
        let h = parse(s).unwrap();
        assert!(h.path_needs_slash);
        assert_eq!(h.path.get(s.as_bytes()), b"?q");
        assert_eq!(status("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), 200);
        assert_eq!(status("GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status("GET http://u@a/x HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status("GET http://b/x HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status("GET ftp://a/x HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"), 405);
    }

    #[test]
    fn host_must_be_one_host() {
        for ok in [
            "a",
            "a.b:80",
            "[::1]:8080",
            "[::1]",
            "xn--d1a.example",
            "1.2.3.4",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "a, b", "a@b", "a b", "a:b", "[zz]", "a:123456", "", "a/b", "a,b",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad}");
        }
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a, b\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a@b\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), 400);
    }

    #[test]
    fn refuses_ambiguous_framing() {
        for s in [
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost\t: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
            "GET / HTTP/1.1\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\nY: z\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\n\n",
            "GET / HTTP/1.1\r\nHost: x\rY: z\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nX\0: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nX: a\x01\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nX: a\x1bb\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
            "G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/2.0\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.2\r\nHost: x\r\n\r\n",
            "GET / http/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1 \r\nHost: x\r\n\r\n",
            "GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /x y HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /\u{80} HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
            "\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            assert_eq!(status(s), 400, "{s:?}");
        }
    }

    #[test]
    fn limits() {
        let long = format!(
            "GET /{} HTTP/1.1\r\nHost: x\r\n\r\n",
            "a".repeat(MAX_TARGET)
        );
        assert_eq!(status(&long), 414);
        let many: String = (0..MAX_FIELDS).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            status(&format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n")),
            431
        );
        let fits: String = (0..MAX_FIELDS - 1)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect();
        assert_eq!(
            status(&format!("GET / HTTP/1.1\r\nHost: x\r\n{fits}\r\n")),
            200
        );
        let mut head = RequestHead::new();
        let mut scanned = 0;
        let big = format!("GET / HTTP/1.1\r\nHost: x\r\nX: {}", "y".repeat(100));
        assert_eq!(
            parse_request(big.as_bytes(), &mut head, &mut scanned, 64).map_err(|r| r.status),
            Err(431)
        );
    }

    #[test]
    fn a_head_arriving_in_pieces_is_found_once_whole() {
        let s = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nNEXT";
        let mut head = RequestHead::new();
        let mut scanned = 0;
        for n in 1..s.len() - 4 {
            assert_eq!(
                parse_request(&s[..n], &mut head, &mut scanned, 1024),
                Ok(false),
                "{n}"
            );
        }
        assert_eq!(
            parse_request(&s[..s.len() - 4], &mut head, &mut scanned, 1024),
            Ok(true)
        );
        assert_eq!(head.len, s.len() - 4);
        assert_eq!(find_head_end(b"a\n\n", 0), Some(3));
        assert_eq!(find_head_end(b"a\r\n\r", 0), None);
        assert_eq!(find_head_end(b"a\r\n\r\n", 4), Some(5));
    }

    #[test]
    fn fields_and_ids() {
        let s = "GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc\r\nTE: trailers\r\nExpect: 100-continue\r\nConnection: keep-alive, X-Secret\r\n\r\n";
        let h = parse(s).unwrap();
        assert_eq!(h.request_id.unwrap().get(s.as_bytes()), b"abc");
        assert!(h.te_trailers && h.expect_continue && h.connection_names);
        let long = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: {}\r\n\r\n",
            "x".repeat(200)
        );
        assert!(parse(&long).unwrap().request_id.is_none());
        for (name, kind) in [
            ("TE", Kind::Te),
            ("Transfer-encoding", Kind::TransferEncoding),
            ("x-forwarded-proto", Kind::XForwardedProto),
            ("Proxy-Connection", Kind::ProxyConnection),
            ("Accept", Kind::Other),
        ] {
            assert_eq!(Kind::of(name.as_bytes()), kind, "{name}");
        }
    }

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
