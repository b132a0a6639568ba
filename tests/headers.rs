//! The spec's header rules, as a backend sees them and as a client sees them.

mod support;
use bytes::Bytes;
use http_body_util::Full;
use support::*;

fn req(addr: std::net::SocketAddr) -> http::request::Builder {
    http::Request::get(format!("http://{addr}/path?q=1"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_set_appended_and_overwritten() {
    let b = Backend::start("b").await;
    let s = sluice(&config("round_robin", &[(&b, 1)], "")).await;
    let addr = addr(&s, "public").await;
    let c = client();
    let got = send(
        &c,
        req(addr)
            .header("host", "Shop.Example.com:8080")
            .header("x-forwarded-for", "203.0.113.9")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "spoofed.example")
            .header("x-request-id", "client-id-42")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("x-request-id"), "client-id-42");
    let seen = b.last();
    assert_eq!(seen.uri, "/path?q=1");
    assert_eq!(seen.headers["host"], "Shop.Example.com:8080");
    assert_eq!(seen.headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(seen.headers["x-forwarded-host"], "Shop.Example.com:8080");
    assert_eq!(seen.headers["x-request-id"], "client-id-42");
    assert!(!seen.headers.contains_key("via"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_generated_and_returned() {
    let b = Backend::start("b").await;
    let s = sluice(&config("round_robin", &[(&b, 1)], "")).await;
    let addr = addr(&s, "public").await;
    let c = client();
    let one = get(&c, addr, "a", "/").await;
    let two = get(&c, addr, "a", "/").await;
    let id = one.header("x-request-id");
    assert_eq!(id.len(), 32);
    assert_ne!(id, two.header("x-request-id"));
    assert_eq!(b.seen()[0].headers["x-request-id"], id);
    assert_eq!(b.seen()[0].headers["x-forwarded-for"], "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_not_forwarded_either_way() {
    let b = Backend::start("b").await;
    let s = sluice(&config("round_robin", &[(&b, 1)], "")).await;
    let addr = addr(&s, "public").await;
    // Raw, so that the client library does not tidy the headers itself.
    let resp = raw(
        addr,
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-Private\r\nX-Private: 1\r\nKeep-Alive: timeout=5\r\nTE: deflate\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\nX-Kept: yes\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let seen = b.last();
    for h in [
        "x-private",
        "keep-alive",
        "te",
        "proxy-connection",
        "upgrade",
        "transfer-encoding",
    ] {
        assert!(!seen.headers.contains_key(h), "{h} was forwarded");
    }
    assert_eq!(seen.headers["x-kept"], "yes");
    // The backend named x-backend-secret in its Connection header.
    let lower = resp.to_ascii_lowercase();
    assert!(!lower.contains("x-backend-secret"), "{resp}");
    assert!(lower.contains("x-backend: b"), "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_targets() {
    let b = Backend::start("b").await;
    let s = sluice(&config("round_robin", &[(&b, 1)], "")).await;
    let addr = addr(&s, "public").await;
    let ok = raw(addr, b"GET http://api.example.com/x?y=1 HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n").await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let seen = b.last();
    assert_eq!(seen.uri, "/x?y=1", "forwarded in origin form");
    assert_eq!(seen.headers["host"], "api.example.com");

    let before = b.requests();
    let bad = raw(
        addr,
        b"GET http://evil.example/x HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    assert!(bad.contains("request id"), "{bad}");
    let missing = raw(addr, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(missing.starts_with("HTTP/1.1 400"), "{missing}");
    assert_eq!(b.requests(), before, "a bad request reached the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_is_proxied_to_http1() {
    let b = Backend::start("b").await;
    let s = sluice(&config("round_robin", &[(&b, 1)], "")).await;
    let addr = addr(&s, "public").await;
    let c = h2c_client();
    let got = send(&c, req(addr).body(Full::new(Bytes::new())).unwrap()).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.version, http::Version::HTTP_2);
    assert_eq!(got.body, "b");
    let seen = b.last();
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(seen.headers["host"], addr.to_string());
    assert_eq!(seen.headers["x-forwarded-host"], addr.to_string());
}
