//! Head writers: the request head a backend gets and the response head a
//! client gets, written straight from the parsed spans into one reused
//! output buffer (no header map, no per-field allocation), and the short
//! answers sluice makes itself.
//!
//! Fields keep their order and the sender's spelling; the ones sluice sets
//! or frames itself are dropped from the copy and written once at the end,
//! in lower case as HTTP/2 would carry them.

use super::codec::{BodyKind, Field, Kind, RequestHead, ResponseHead};
use crate::config::HeaderRules;
use std::io::Write;
use std::net::IpAddr;

/// What a backend learns about the client (the spec's forwarding headers).
pub struct Forwarded<'a> {
    pub peer: IpAddr,
    pub https: bool,
    pub request_id: &'a [u8],
}

/// What a route changes in the request head (see `proxy::policy`).
#[derive(Default)]
pub struct Rewrite<'a> {
    /// The path and query the backend gets instead of the client's.
    pub path: Option<&'a [u8]>,
    /// The Host the backend gets (X-Forwarded-Host keeps the client's).
    pub host: Option<&'a [u8]>,
    /// The route's `request_headers`, applied after sluice's own fields.
    pub rules: Option<&'a HeaderRules>,
    /// Basic auth: the credentials stop at sluice.
    pub drop_authorization: bool,
    /// Pass `TE: trailers` on, if the client sent it: the pool speaks
    /// HTTP/2 (gRPC needs it); TE is hop-by-hop otherwise.
    pub te_trailers: bool,
}

/// What a route changes in the response head.
#[derive(Default)]
pub struct Edits<'a> {
    /// The route's `response_headers`.
    pub rules: Option<&'a HeaderRules>,
    /// The body is compressed with this coding (Content-Encoding).
    pub encoding: Option<&'static str>,
    /// The answer depends on Accept-Encoding (a compressible response).
    pub vary: bool,
    /// A sticky pool's cookie for the backend that answered.
    pub set_cookie: Option<&'a str>,
}

/// Writes the `set` and `add` fields of header rules.
fn rule_fields(out: &mut Vec<u8>, rules: &HeaderRules) {
    for (n, v) in rules.set.iter().chain(&rules.add) {
        field(out, n.as_bytes(), v.as_bytes());
    }
}

/// How the response body goes to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked,
    /// Until sluice closes the connection.
    Close,
    /// No body, but the length a body would have had (HEAD, 304).
    Announced(Option<u64>),
}

/// The Connection field of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// HTTP/1.1 keep-alive: the default, nothing written.
    Default,
    Close,
    /// An HTTP/1.0 client that asked to be kept alive.
    KeepAlive,
    /// Switching protocols: `connection: upgrade` and this Upgrade value.
    Upgrade,
}

/// Whether `name` is listed in one of the message's Connection fields:
/// such fields are hop-by-hop too (RFC 9110 section 7.6.1).
fn named_in_connection(buf: &[u8], fields: &[Field], name: &[u8]) -> bool {
    fields
        .iter()
        .filter(|f| f.kind == Kind::Connection)
        .flat_map(|f| super::codec::tokens(f.value.get(buf)))
        .any(|t| t.eq_ignore_ascii_case(name))
}

pub(super) fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

pub fn number(out: &mut Vec<u8>, n: u64) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(n).as_bytes());
}

/// Writes the request head for the backend: request line in origin form,
/// the client's end-to-end fields, one framing field, then Host (for an
/// absolute-form target), the WebSocket upgrade and the forwarding fields.
pub fn request_head(
    out: &mut Vec<u8>,
    buf: &[u8],
    head: &RequestHead,
    fwd: &Forwarded<'_>,
    rw: &Rewrite<'_>,
) {
    out.extend_from_slice(head.method_span.get(buf));
    out.push(b' ');
    match rw.path {
        Some(p) => out.extend_from_slice(p),
        None => {
            if head.path_needs_slash {
                out.push(b'/');
            }
            out.extend_from_slice(head.path.get(buf));
        }
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut xff = 0;
    let edited = rw.drop_authorization || rw.rules.is_some();
    for f in &head.fields {
        match f.kind {
            Kind::Other => {
                let name = f.name.get(buf);
                if head.connection_names && named_in_connection(buf, &head.fields, name) {
                    continue;
                }
                if edited
                    && ((rw.drop_authorization && name.eq_ignore_ascii_case(b"authorization"))
                        || rw.rules.is_some_and(|r| r.drops(name)))
                {
                    continue;
                }
                field(out, name, f.value.get(buf));
            }
            // The absolute-form authority is the Host the backend gets.
            Kind::Host if head.authority.is_none() => {
                field(out, f.name.get(buf), rw.host.unwrap_or(f.value.get(buf)))
            }
            Kind::XForwardedFor => xff += 1,
            // Hop-by-hop, framed again below, sluice's own, or answered
            // by sluice (Expect: 100-continue).
            _ => {}
        }
    }
    match head.body {
        BodyKind::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            number(out, n);
            out.extend_from_slice(b"\r\n");
        }
        BodyKind::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        BodyKind::None | BodyKind::Close => {}
    }
    if let Some(a) = head.authority {
        field(out, b"host", rw.host.unwrap_or(a.get(buf)));
    } else if let (Some(h), None) = (rw.host, head.host_span()) {
        field(out, b"host", h);
    }
    if head.te_trailers && rw.te_trailers {
        out.extend_from_slice(b"te: trailers\r\n");
    }
    if let Some(u) = head.upgrade {
        out.extend_from_slice(b"connection: upgrade\r\n");
        field(out, b"upgrade", u.get(buf));
    }
    // The peer joins the X-Forwarded-For chain: several fields count as one
    // comma-separated list (RFC 9110 section 5.3).
    out.extend_from_slice(b"x-forwarded-for: ");
    if xff > 0 {
        for v in head.values(buf, Kind::XForwardedFor) {
            out.extend_from_slice(v);
            out.extend_from_slice(b", ");
        }
    }
    let _ = write!(out, "{}", fwd.peer);
    out.extend_from_slice(b"\r\nx-forwarded-proto: ");
    out.extend_from_slice(if fwd.https { b"https" } else { b"http" });
    out.extend_from_slice(b"\r\n");
    if let Some(h) = head.host_span() {
        field(out, b"x-forwarded-host", h.get(buf));
    }
    field(out, b"x-request-id", fwd.request_id);
    if let Some(rules) = rw.rules {
        rule_fields(out, rules);
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes the response head for the client: HTTP/1.1 status line with the
/// backend's reason, its end-to-end fields, the framing of `framing`, the
/// request id and the Connection field.
pub fn response_head(
    out: &mut Vec<u8>,
    buf: &[u8],
    resp: &ResponseHead,
    request_id: &[u8],
    framing: Framing,
    connection: Connection,
    edits: &Edits<'_>,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    number(out, u64::from(resp.status));
    out.push(b' ');
    out.extend_from_slice(resp.reason.get(buf));
    out.extend_from_slice(b"\r\n");
    for f in &resp.fields {
        if f.kind != Kind::Other {
            continue;
        }
        let name = f.name.get(buf);
        if resp.connection_names && named_in_connection(buf, &resp.fields, name) {
            continue;
        }
        if edits.rules.is_some_and(|r| r.drops(name)) {
            continue;
        }
        field(out, name, f.value.get(buf));
    }
    field(out, b"x-request-id", request_id);
    if let Some(e) = edits.encoding {
        field(out, b"content-encoding", e.as_bytes());
    }
    if edits.vary {
        out.extend_from_slice(b"vary: accept-encoding\r\n");
    }
    if let Some(c) = edits.set_cookie {
        field(out, b"set-cookie", c.as_bytes());
    }
    if let Some(rules) = edits.rules {
        rule_fields(out, rules);
    }
    match connection {
        Connection::Default => {}
        Connection::Close => out.extend_from_slice(b"connection: close\r\n"),
        Connection::KeepAlive => out.extend_from_slice(b"connection: keep-alive\r\n"),
        Connection::Upgrade => {
            out.extend_from_slice(b"connection: upgrade\r\n");
            if let Some(u) = resp.upgrade {
                field(out, b"upgrade", u.get(buf));
            }
        }
    }
    // The framing field last, as hyper writes it.
    match framing {
        Framing::Length(n) | Framing::Announced(Some(n)) => {
            out.extend_from_slice(b"content-length: ");
            number(out, n);
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::Close | Framing::Announced(None) => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// An answer sluice makes itself: a short text/plain body naming the
/// request id, as every error of the spec.
pub struct Answer<'a> {
    pub status: u16,
    pub detail: &'a str,
    pub request_id: &'a [u8],
    pub close: bool,
    /// Retry-After, in whole seconds.
    pub retry_after: Option<u64>,
    /// Further fields, each ending in CRLF.
    pub extra: &'a [u8],
    pub head_only: bool,
}

pub fn answer(out: &mut Vec<u8>, a: &Answer<'_>) {
    let reason = http::StatusCode::from_u16(a.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let mut code = itoa::Buffer::new();
    let code = code.format(a.status);
    // The body's length is known before it is written.
    let id = std::str::from_utf8(a.request_id).unwrap_or("-");
    let body_len = code.len() + 1 + reason.len() + 2 + a.detail.len() + 13 + id.len() + 2;
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(code.as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: text/plain; charset=utf-8\r\n");
    field(out, b"x-request-id", a.request_id);
    out.extend_from_slice(b"content-length: ");
    number(out, body_len as u64);
    out.extend_from_slice(b"\r\n");
    if let Some(s) = a.retry_after {
        out.extend_from_slice(b"retry-after: ");
        number(out, s);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(a.extra);
    if a.close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !a.head_only {
        let _ = writeln!(out, "{code} {reason}: {} (request id {id})", a.detail);
    }
}

#[cfg(test)]
mod tests {
    use super::super::codec::{parse_request, parse_response};
    use super::*;

    fn rewrite(req: &str, peer: &str) -> String {
        let mut head = RequestHead::new();
        let mut scanned = 0;
        assert!(parse_request(req.as_bytes(), &mut head, &mut scanned, 65536).unwrap());
        let mut out = Vec::new();
        request_head(
            &mut out,
            req.as_bytes(),
            &head,
            &Forwarded {
                peer: peer.parse().unwrap(),
                https: false,
                request_id: b"id1",
            },
            &Rewrite::default(),
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn request_heads_lose_hop_by_hop_and_gain_forwarding_fields() {
        let out = rewrite(
            "GET /a?b HTTP/1.1\r\nHost: a.com\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\nX-Request-Id: theirs\r\nAccept: */*\r\n\r\n",
            "9.9.9.9",
        );
        assert_eq!(
            out,
            "GET /a?b HTTP/1.1\r\nHost: a.com\r\nAccept: */*\r\nx-forwarded-for: 1.1.1.1, 2.2.2.2, 9.9.9.9\r\nx-forwarded-proto: http\r\nx-forwarded-host: a.com\r\nx-request-id: id1\r\n\r\n"
        );
    }

    #[test]
    fn framing_is_written_once_and_absolute_form_becomes_origin_form() {
        let out = rewrite(
            "POST http://b.com:81/x HTTP/1.1\r\nHost: b.com:81\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            "::1",
        );
        assert!(out.starts_with("POST /x HTTP/1.1\r\n"), "{out}");
        assert_eq!(out.matches("content-length: 3\r\n").count(), 1, "{out}");
        assert!(!out.contains("Content-Length"), "{out}");
        assert!(
            out.contains("host: b.com:81\r\n") && !out.contains("Host:"),
            "{out}"
        );
        assert!(out.contains("x-forwarded-for: ::1\r\n"), "{out}");
        let out = rewrite(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
            "1.2.3.4",
        );
        assert!(out.contains("transfer-encoding: chunked\r\n"), "{out}");
        assert!(!out.to_ascii_lowercase().contains("expect"), "{out}");
        let out = rewrite(
            "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "1.2.3.4",
        );
        assert!(
            out.contains("connection: upgrade\r\nupgrade: websocket\r\n"),
            "{out}"
        );
    }

    #[test]
    fn response_heads() {
        let raw = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, X-Backend-Secret\r\nX-Backend-Secret: s\r\nX-Request-Id: backend\r\nSet-Cookie: a=1\r\n\r\n";
        let mut resp = ResponseHead::new();
        let mut scanned = 0;
        assert!(parse_response(raw.as_bytes(), &mut resp, &mut scanned, 4096, false).unwrap());
        let mut out = Vec::new();
        response_head(
            &mut out,
            raw.as_bytes(),
            &resp,
            b"rid",
            Framing::Length(2),
            Connection::Close,
            &Edits::default(),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nx-request-id: rid\r\nconnection: close\r\ncontent-length: 2\r\n\r\n"
        );
    }

    #[test]
    fn answers_name_the_request_id_and_their_length_is_exact() {
        let mut out = Vec::new();
        answer(
            &mut out,
            &Answer {
                status: 503,
                detail: "no backend available",
                request_id: b"abc",
                close: false,
                retry_after: Some(1),
                extra: b"",
                head_only: false,
            },
        );
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{head}"
        );
        assert!(head.contains("retry-after: 1"), "{head}");
        assert_eq!(
            body,
            "503 Service Unavailable: no backend available (request id abc)\n"
        );
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
    }
}
