//! Tests of `request_head`.
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
    let h = parse("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n")
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
    let h = parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
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
