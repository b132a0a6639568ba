use super::*;

fn req(head: &str, https: bool) -> (Request<()>, Framing) {
    match request(head.as_bytes(), https, "10.0.0.1:8080") {
        Ok(r) => r,
        Err(e) => panic!("{head:?} was refused: {e}"),
    }
}

#[test]
fn a_request_head_becomes_http2_pseudo_fields_without_connection_fields() {
    let (r, framing) = req(
        "POST /svc.Echo/Say?x=1 HTTP/1.1\r\nhost: api.test\r\ncontent-type: application/grpc\r\nte: trailers\r\nconnection: keep-alive\r\nkeep-alive: 5\r\nupgrade: h2c\r\ntransfer-encoding: chunked\r\nx-forwarded-for: 1.2.3.4\r\n\r\n",
        true,
    );
    assert_eq!(r.method(), Method::POST);
    assert_eq!(r.uri().to_string(), "https://api.test/svc.Echo/Say?x=1");
    let h = r.headers();
    assert_eq!(h["te"], "trailers");
    assert_eq!(h["content-type"], "application/grpc");
    assert_eq!(h["x-forwarded-for"], "1.2.3.4");
    for gone in [
        "host",
        "connection",
        "keep-alive",
        "upgrade",
        "transfer-encoding",
    ] {
        assert!(
            !h.contains_key(gone),
            "{gone} should not be sent over HTTP/2"
        );
    }
    assert!(matches!(framing, Framing::Chunked(..)));
}

#[test]
fn te_other_than_trailers_is_dropped_and_lengths_frame_the_body() {
    let (r, framing) = req(
        "PUT /a HTTP/1.1\r\nhost: h\r\nte: gzip\r\ncontent-length: 12\r\n\r\n",
        false,
    );
    assert!(!r.headers().contains_key("te"));
    assert_eq!(r.uri().scheme_str(), Some("http"));
    assert!(matches!(framing, Framing::Length(12)));
    let (_, framing) = req(
        "GET / HTTP/1.1\r\nhost: h\r\ncontent-length: 0\r\n\r\n",
        false,
    );
    assert!(matches!(framing, Framing::None));
}

#[test]
fn a_head_without_host_is_sent_to_the_backend_addr() {
    let (r, _) = req("GET /x HTTP/1.0\r\n\r\n", false);
    assert_eq!(r.uri().to_string(), "http://10.0.0.1:8080/x");
}

#[test]
fn broken_heads_are_errors_not_panics() {
    for head in [
        "GET / HTTP/1.1\r\nhost: a b\r\n\r\n",
        "G@T / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\ncontent-length: x\r\n\r\n",
        "\r\n\r\n",
    ] {
        assert!(request(head.as_bytes(), false, "h:1").is_err(), "{head:?}");
    }
}

#[test]
fn a_chunked_trailer_section_becomes_trailers() {
    let t = trailers(b"grpc-status: 0\r\ngrpc-message: ok\r\n\r\n")
        .ok()
        .flatten();
    let t = t.as_ref();
    assert_eq!(
        t.and_then(|t| t.get("grpc-status")).map(|v| v.as_bytes()),
        Some(&b"0"[..])
    );
    assert_eq!(t.map(|t| t.len()), Some(2));
    assert!(matches!(trailers(b"\r\n"), Ok(None)));
    assert!(trailers(b"no colon\r\n\r\n").is_err());
}
