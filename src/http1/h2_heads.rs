//! HTTP/1.1 heads to HTTP/2 ones and back, for an HTTP/2 pool
//! (`h2_upstream`), and chunked trailer sections as HTTP/2 trailers (for
//! HTTP/2 clients too, `bridge_body`): pure functions over bytes and
//! `http` types.

use super::chunked::Chunked;
use super::h2_upstream::invalid;
use h2::RecvStream;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri};
use std::io;

/// Trailer sections of request bodies are bounded like heads.
pub const TRAILER_LIMIT: usize = 64 * 1024;

/// How a request body is framed: nothing, a length, or chunked (with its
/// trailer section gathered as it passes).
pub enum Framing {
    None,
    Length(u64),
    Chunked(Box<Chunked>, Vec<u8>),
}

/// The HTTP/2 request for an HTTP/1.1 request head, and how its body is
/// framed.
pub fn request(head: &[u8], https: bool, fallback: &str) -> io::Result<(Request<()>, Framing)> {
    // A head's fields fit on the stack, as the engine's own parse does;
    // a head with more lines than that gets room on the heap.
    let count = memchr::memmem::find_iter(head, b"\r\n").count();
    let mut stack = [httparse::EMPTY_HEADER; 64];
    let mut heap;
    let fields = if count <= stack.len() {
        &mut stack[..]
    } else {
        heap = vec![httparse::EMPTY_HEADER; count];
        &mut heap[..]
    };
    let mut parsed = httparse::Request::new(fields);
    if !matches!(parsed.parse(head), Ok(httparse::Status::Complete(_))) {
        return Err(invalid("unparsable request head"));
    }
    let method = Method::from_bytes(parsed.method.unwrap_or("GET").as_bytes())
        .map_err(|_| invalid("invalid method"))?;
    let mut authority = None;
    let mut framing = Framing::None;
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    for f in parsed.headers.iter() {
        let name = HeaderName::from_bytes(f.name.as_bytes()).map_err(|_| invalid("field name"))?;
        match name.as_str() {
            "host" => authority = Some(f.value),
            "transfer-encoding" => {
                framing = Framing::Chunked(Box::new(Chunked::new(TRAILER_LIMIT)), Vec::new())
            }
            "content-length" => {
                let n = std::str::from_utf8(f.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .ok_or_else(|| invalid("content-length"))?;
                if n > 0 && !matches!(framing, Framing::Chunked(..)) {
                    framing = Framing::Length(n);
                }
                headers.append(name, HeaderValue::from(n));
            }
            // Connection-specific: not HTTP/2 (RFC 9113 section 8.2.2).
            "connection" | "keep-alive" | "proxy-connection" | "upgrade" | "expect"
            | "http2-settings" => {}
            "te" if !super::codec::tokens(f.value).any(|t| t.eq_ignore_ascii_case(b"trailers")) => {
            }
            "te" => {
                headers.append(name, HeaderValue::from_static("trailers"));
            }
            _ => {
                let value = HeaderValue::from_bytes(f.value).map_err(|_| invalid("field value"))?;
                headers.append(name, value);
            }
        }
    }
    if matches!(framing, Framing::Chunked(..)) {
        headers.remove(http::header::CONTENT_LENGTH);
    }
    let authority = authority.unwrap_or(fallback.as_bytes());
    let path = parsed.path.unwrap_or("/");
    let uri = Uri::builder()
        .scheme(if https { "https" } else { "http" })
        .authority(authority)
        .path_and_query(if path.starts_with('/') { path } else { "/" })
        .build()
        .map_err(|_| invalid("request target or Host"))?;
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    Ok((req, framing))
}

/// Writes the HTTP/1.1 head of an HTTP/2 response; true when its body is
/// to be chunked (no Content-Length: the length is unknown, and trailers
/// may follow).
pub fn response_head(out: &mut Vec<u8>, resp: &Response<RecvStream>, head_request: bool) -> bool {
    let status = resp.status();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in resp.headers() {
        super::write::field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    let bodiless =
        head_request || status.is_informational() || matches!(status.as_u16(), 204 | 304);
    let chunked = !bodiless && !resp.headers().contains_key(http::header::CONTENT_LENGTH);
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
    chunked
}

/// A chunked body's trailer section as HTTP/2 trailers; None when empty.
pub fn trailers(section: &[u8]) -> io::Result<Option<HeaderMap>> {
    let count = memchr::memmem::find_iter(section, b"\r\n").count();
    let mut fields = vec![httparse::EMPTY_HEADER; count];
    let parsed = match httparse::parse_headers(section, &mut fields) {
        Ok(httparse::Status::Complete((_, parsed))) => parsed,
        _ => return Err(invalid("unparsable trailer section")),
    };
    let mut map = HeaderMap::new();
    for f in parsed {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(f.name.as_bytes()),
            HeaderValue::from_bytes(f.value),
        ) {
            map.append(n, v);
        }
    }
    Ok((!map.is_empty()).then_some(map))
}

#[cfg(test)]
#[path = "h2_heads_tests.rs"]
mod tests;
