//! Strict HTTP/1.1 request framing: what sluice accepts from a client,
//! checked on the raw bytes before hyper parses them.
//!
//! hyper's parser is lenient where an edge proxy must not be (it is written
//! to be robust, not to refuse ambiguity), and request smuggling lives in
//! exactly those gaps: two proxies that disagree on where a request ends.
//! So every request head is checked here first, and rejected whole if it is
//! ambiguous or malformed (RFC 9112):
//!
//! - request line: a token method, a target of visible ASCII, and exactly
//!   `HTTP/1.1` or `HTTP/1.0`; a target longer than [`MAX_TARGET`] is 414;
//! - lines end in CRLF (a bare LF or CR is refused, not repaired); no
//!   obs-fold; header names are tokens followed directly by the colon (no
//!   whitespace before it); values hold no control characters but HTAB;
//! - at most [`MAX_HEADERS`] header fields (431);
//! - HTTP/1.1 has exactly one Host; HTTP/1.0 at most one;
//! - Transfer-Encoding is allowed only as exactly `chunked`, only in
//!   HTTP/1.1, never with Content-Length; Content-Length is digits only, and
//!   repeated values must agree.
//!
//! Chunked bodies are followed by [`Chunked`], which refuses invalid or
//! overflowing chunk sizes and malformed chunk and trailer lines, so sluice
//! knows where each request ends and checks pipelined heads too.

/// The most header fields a request may carry (as Envoy's default).
pub const MAX_HEADERS: usize = 100;
/// The longest request target (nginx's default large header buffer).
pub const MAX_TARGET: usize = 8 * 1024;
/// The longest chunk-size line, extensions included.
const MAX_CHUNK_LINE: usize = 4096;

/// Why a request is refused: the status and a short reason for the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    pub status: u16,
    pub reason: &'static str,
}

const fn bad(reason: &'static str) -> Reject {
    Reject {
        status: 400,
        reason,
    }
}

/// How the body of a request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    None,
    Length(u64),
    Chunked,
}

/// What the framing layer needs to know about an accepted head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub body: BodyKind,
    /// `Connection: upgrade` with an `Upgrade` header: the bytes after this
    /// request may belong to another protocol.
    pub upgrade: bool,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Field-value bytes: visible ASCII, SP, HTAB and obs-text; no other CTL.
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| trim_ows(t).eq_ignore_ascii_case(token))
}

/// Checks one complete request head (request line through the empty line,
/// CRLFs included) and says how its body is framed.
pub fn check_head(head: &[u8]) -> Result<Head, Reject> {
    let Some(body) = head.strip_suffix(b"\r\n\r\n") else {
        return Err(bad("malformed request head"));
    };
    // Every line but the last was followed by LF and must end in CR (the
    // last one's CRLF went with the final CRLFCRLF).
    let mut rest = body.split(|&b| b == b'\n').peekable();
    let request_line = rest.next().unwrap_or_default();
    let request_line = strip_cr(request_line, rest.peek().is_none())?;
    let http11 = check_request_line(request_line)?;

    let mut count = 0usize;
    let mut hosts = 0usize;
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding = 0usize;
    let mut te_chunked = true;
    let mut connection_upgrade = false;
    let mut upgrade = false;
    while let Some(line) = rest.next() {
        let last = rest.peek().is_none();
        let line = strip_cr(line, last)?;
        count += 1;
        if count > MAX_HEADERS {
            return Err(Reject {
                status: 431,
                reason: "too many header fields",
            });
        }
        if let [b' ' | b'\t', ..] = line {
            return Err(bad("obsolete line folding"));
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(bad("header line without a colon"));
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(bad("invalid header name"));
        }
        if !value.iter().all(|&b| is_field_byte(b)) {
            return Err(bad("invalid character in a header value"));
        }
        let value = trim_ows(value);
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case(b"content-length") {
            for v in value.split(|&b| b == b',') {
                let n = parse_length(trim_ows(v))?;
                if content_length.is_some_and(|m| m != n) {
                    return Err(bad("conflicting Content-Length values"));
                }
                content_length = Some(n);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_encoding += 1;
            te_chunked &= value.eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"connection") {
            connection_upgrade |= has_token(value, b"upgrade");
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade = true;
        }
    }
    match (http11, hosts) {
        (true, 0) => return Err(bad("missing Host header")),
        (_, 2..) => return Err(bad("more than one Host header")),
        _ => {}
    }
    let body = match (transfer_encoding, content_length) {
        (0, None) => BodyKind::None,
        (0, Some(0)) => BodyKind::None,
        (0, Some(n)) => BodyKind::Length(n),
        (_, Some(_)) => return Err(bad("both Transfer-Encoding and Content-Length")),
        (_, None) if !http11 => return Err(bad("Transfer-Encoding in an HTTP/1.0 request")),
        (1, None) if te_chunked => BodyKind::Chunked,
        _ => return Err(bad("Transfer-Encoding other than chunked")),
    };
    Ok(Head {
        body,
        upgrade: connection_upgrade && upgrade,
    })
}

/// Strips the CR that must end a line split at LF (not for the last line,
/// see the caller); no other CR may appear in it.
fn strip_cr(line: &[u8], last: bool) -> Result<&[u8], Reject> {
    let line = if last {
        // The final CRLFCRLF was stripped whole, so the last line has no CR.
        line
    } else {
        line.strip_suffix(b"\r").ok_or(bad("bare LF line ending"))?
    };
    if line.contains(&b'\r') {
        return Err(bad("bare CR in the request head"));
    }
    Ok(line)
}

/// Checks `METHOD SP target SP version`; true for HTTP/1.1.
fn check_request_line(line: &[u8]) -> Result<bool, Reject> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("malformed request line"));
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(bad("invalid method"));
    }
    if target.is_empty() || !target.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
        return Err(bad("invalid request target"));
    }
    if target.len() > MAX_TARGET {
        return Err(Reject {
            status: 414,
            reason: "request target too long",
        });
    }
    match version {
        b"HTTP/1.1" => Ok(true),
        b"HTTP/1.0" => Ok(false),
        _ => Err(bad("unsupported HTTP version")),
    }
}

fn parse_length(v: &[u8]) -> Result<u64, Reject> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return Err(bad("invalid Content-Length"));
    }
    v.iter()
        .try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .ok_or(bad("invalid Content-Length"))
}

/// Where a chunked body's parser is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Hex digits of a chunk size (`digits` so far).
    Size,
    /// After the size: whitespace, then `;` or CR.
    Bws,
    /// Chunk extensions, up to CR.
    Ext,
    /// CR seen after the size line; LF must follow.
    SizeLf,
    /// Inside chunk data, `left` bytes to go.
    Data,
    /// After data: CR, then LF.
    DataCr,
    DataLf,
    /// In the trailer section: at the start of a line (`line` = 0) or in it.
    Trailer,
    TrailerLf,
    Done,
}

/// Follows a chunked body byte by byte (RFC 9112 section 7.1).
#[derive(Debug, Clone)]
pub struct Chunked {
    state: State,
    size: u64,
    digits: u8,
    left: u64,
    line: usize,
    trailer_bytes: usize,
    max_trailer: usize,
}

impl Chunked {
    /// `max_trailer` bounds the trailer section (the head size limit).
    pub fn new(max_trailer: usize) -> Chunked {
        Chunked {
            state: State::Size,
            size: 0,
            digits: 0,
            left: 0,
            line: 0,
            trailer_bytes: 0,
            max_trailer,
        }
    }

    /// Consumes `bytes`; returns how many belong to this body, and whether
    /// the body ended there.
    pub fn advance(&mut self, bytes: &[u8]) -> Result<(usize, bool), Reject> {
        let mut i = 0;
        while i < bytes.len() {
            if self.state == State::Data {
                let take = (bytes.len() - i).min(self.left.min(usize::MAX as u64) as usize);
                i += take;
                self.left -= take as u64;
                if self.left == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let b = bytes[i];
            i += 1;
            self.line += 1;
            if self.line > MAX_CHUNK_LINE
                && matches!(self.state, State::Size | State::Bws | State::Ext)
            {
                return Err(bad("chunk size line too long"));
            }
            match self.state {
                State::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                        self.digits += 1;
                        if self.digits > 16 {
                            return Err(bad("chunk size overflows"));
                        }
                        self.size = (self.size << 4) | d;
                    }
                    _ if self.digits == 0 => return Err(bad("invalid chunk size")),
                    b'\r' => self.state = State::SizeLf,
                    b';' => self.state = State::Ext,
                    b' ' | b'\t' => self.state = State::Bws,
                    _ => return Err(bad("invalid chunk size")),
                },
                State::Bws => match b {
                    b' ' | b'\t' => {}
                    b';' => self.state = State::Ext,
                    b'\r' => self.state = State::SizeLf,
                    _ => return Err(bad("invalid chunk extension")),
                },
                State::Ext => match b {
                    b'\r' => self.state = State::SizeLf,
                    _ if is_field_byte(b) => {}
                    _ => return Err(bad("invalid chunk extension")),
                },
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(bad("chunk size line not ended by CRLF"));
                    }
                    self.line = 0;
                    if self.size == 0 {
                        self.state = State::Trailer;
                    } else {
                        self.left = self.size;
                        self.state = State::Data;
                    }
                    self.size = 0;
                    self.digits = 0;
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(bad("chunk data not followed by CRLF"));
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(bad("chunk data not followed by CRLF"));
                    }
                    self.line = 0;
                    self.state = State::Size;
                }
                State::Trailer => {
                    self.trailer_bytes += 1;
                    if self.trailer_bytes > self.max_trailer {
                        return Err(Reject {
                            status: 431,
                            reason: "trailer section too large",
                        });
                    }
                    match b {
                        b'\r' => self.state = State::TrailerLf,
                        b'\n' => return Err(bad("bare LF in the trailer section")),
                        _ if self.line == 1 && (b == b' ' || b == b'\t') => {
                            return Err(bad("obsolete line folding"))
                        }
                        _ if is_field_byte(b) => {}
                        _ => return Err(bad("invalid character in a trailer")),
                    }
                }
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(bad("bare CR in the trailer section"));
                    }
                    // An empty line (CRLF at the start of a line) ends it.
                    if self.line == 2 {
                        self.state = State::Done;
                        return Ok((i, true));
                    }
                    self.line = 0;
                    self.state = State::Trailer;
                }
                // Data is consumed before this match; Done returned already.
                State::Data | State::Done => {}
            }
        }
        Ok((i, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(s: &str) -> Result<Head, Reject> {
        check_head(s.as_bytes())
    }

    fn status(s: &str) -> u16 {
        head(s).map(|_| 200).unwrap_or_else(|r| r.status)
    }

    #[test]
    fn accepts_ordinary_requests() {
        let h = head("GET /a?b=c HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n").unwrap();
        assert_eq!(h.body, BodyKind::None);
        let h = head("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n").unwrap();
        assert_eq!(h.body, BodyKind::Length(12));
        let h = head("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n").unwrap();
        assert_eq!(h.body, BodyKind::Chunked);
        let h =
            head("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n")
                .unwrap();
        assert_eq!(h.body, BodyKind::Length(5));
        assert_eq!(status("GET / HTTP/1.0\r\n\r\n"), 200);
        assert_eq!(
            status("GET http://x/ HTTP/1.1\r\nHost: x\r\nX-Empty:\r\n\r\n"),
            200
        );
        let h =
            head("GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
                .unwrap();
        assert!(h.upgrade);
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
            "GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
            "GET / HTTP/1.1\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\rY: z\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nX\0: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nX: a\x01\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
            "G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/2.0\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1 \r\nHost: x\r\n\r\n",
            "GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
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
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            status(&format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n")),
            431
        );
    }

    fn chunked(body: &[u8]) -> Result<(usize, bool), Reject> {
        Chunked::new(1024).advance(body)
    }

    #[test]
    fn follows_chunked_bodies() {
        let body =
            b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        assert_eq!(chunked(body), Ok((body.len() - 4, true)));
        assert_eq!(chunked(b"0\r\n\r\n"), Ok((5, true)));
        // Byte by byte, the same.
        let mut c = Chunked::new(1024);
        let mut ended = None;
        for (i, b) in body.iter().enumerate() {
            let (n, done) = c.advance(std::slice::from_ref(b)).unwrap();
            assert_eq!(n, 1);
            if done {
                ended = Some(i + 1);
                break;
            }
        }
        assert_eq!(ended, Some(body.len() - 4));
        assert_eq!(chunked(b"5\r\nhel"), Ok((6, false)));
    }

    #[test]
    fn refuses_bad_chunks() {
        for b in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloX\r\n",
            b"10000000000000000\r\n",
            b"-1\r\n",
            b"5\r\nhello\r\n0\r\nX: \x01\r\n\r\n",
            b"5\r\nhello\r\n0\r\n\n",
            b"5 x\r\nhello\r\n",
            b"5;\x01\r\nhello\r\n",
        ] {
            let r = chunked(b);
            assert!(
                r.is_err() || !r.unwrap().1,
                "{:?}",
                String::from_utf8_lossy(b)
            );
        }
        assert!(chunked(b"5 ;x=y\r\nhello\r\n").is_ok());
        assert_eq!(chunked(b"ffffffffffffffff\r\n").map(|r| r.1), Ok(false));
        assert!(chunked(b"fffffffffffffffff\r\n").is_err());
    }
}
