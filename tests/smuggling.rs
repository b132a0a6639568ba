//! Request smuggling and malformed framing, over raw sockets: every
//! ambiguous or malformed request is answered 400 (or the limit's status)
//! and nothing of it, nor anything after it on the connection, reaches the
//! backend. Requests that pass are forwarded with one framing header.

mod support;
use std::time::Duration;
use support::*;

const FOLLOW_UP: &str = "GET /follow-up HTTP/1.1\r\nHost: a\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_and_malformed_requests_are_400_and_never_forwarded() {
    let b = Backend::start("b").await;
    let s = sluice(&config("round_robin", &[(&b, 1)], "")).await;
    let a = addr(&s, "public").await;
    let cases: &[(&str, &str)] = &[
        ("CL and TE", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX"),
        ("TE and CL", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nX"),
        ("differing CLs", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
        ("differing CL list", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\nabcd"),
        ("signed CL", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc"),
        ("TE not chunked", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"),
        ("TE chunked then gzip", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
        ("TE gzip then chunked", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
        ("TE twice", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("TE lookalike", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
        ("TE in HTTP/1.0", "POST /x HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("space before colon", "GET /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n"),
        ("tab before colon", "GET /x HTTP/1.1\r\nHost\t: a\r\n\r\n"),
        ("invalid chunk size", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
        ("negative chunk size", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n"),
        ("overflowing chunk size", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n"),
        ("chunk without CRLF", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"),
        ("NUL in value", "GET /x HTTP/1.1\r\nHost: a\r\nX-A: a\0b\r\n\r\n"),
        ("CR in value", "GET /x HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n"),
        ("control in value", "GET /x HTTP/1.1\r\nHost: a\r\nX-A: a\x1bb\r\n\r\n"),
        ("control in name", "GET /x HTTP/1.1\r\nHost: a\r\nX\x01A: b\r\n\r\n"),
        ("space in name", "GET /x HTTP/1.1\r\nHost: a\r\nX A: b\r\n\r\n"),
        ("missing Host", "GET /x HTTP/1.1\r\n\r\n"),
        ("two Hosts", "GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        ("authority disagrees with Host", "GET http://b/x HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("invalid method", "G(T /x HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("invalid version", "GET /x HTTP/1.2\r\nHost: a\r\n\r\n"),
        ("HTTP/2 request line", "GET /x HTTP/2.0\r\nHost: a\r\n\r\n"),
        ("lower-case version", "GET /x http/1.1\r\nHost: a\r\n\r\n"),
        ("extra space in request line", "GET  /x HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("space in target", "GET /x y HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("obs-fold", "GET /x HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n"),
        ("bare LF", "GET /x HTTP/1.1\nHost: a\n\n"),
        ("bare LF in headers", "GET /x HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n"),
        ("bare CR", "GET /x HTTP/1.1\r\nHost: a\rX-A: b\r\n\r\n"),
        ("header line without colon", "GET /x HTTP/1.1\r\nHost: a\r\nJunk\r\n\r\n"),
    ];
    let mut failures = Vec::new();
    for (what, request) in cases {
        let before = b.requests();
        let sent = format!("{request}{FOLLOW_UP}");
        let resp = within(15, raw(a, sent.as_bytes())).await;
        let status = status_of(&resp);
        if status != 400 {
            failures.push(format!("{what}: status {status}: {resp:?}"));
        }
        if b.requests() != before {
            failures.push(format!("{what}: the backend saw {:?}", b.last().uri));
        }
        // One answer: the follow-up is never served on a rejected connection.
        if resp.matches("HTTP/1.1 ").count() != 1 {
            failures.push(format!("{what}: not exactly one answer: {resp:?}"));
        }
        if status == 400 && !resp.contains("x-request-id: ") {
            failures.push(format!("{what}: no request id: {resp:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_classic_smuggling_attempts_smuggle_nothing() {
    let b = Backend::start("b").await;
    let s = sluice(&config("round_robin", &[(&b, 1)], "")).await;
    let a = addr(&s, "public").await;
    // CL.TE and TE.CL: whichever length a backend believed, /smuggled would
    // be a second request hidden in the first one's body.
    for attack in [
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n5c\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\nContent-Length: 15\r\n\r\nx=1\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-encoding: identity\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        let resp = within(15, raw(a, attack.as_bytes())).await;
        assert_eq!(status_of(&resp), 400, "{attack:?}: {resp}");
    }
    assert!(
        b.seen().iter().all(|s| s.uri != "/smuggled"),
        "smuggled: {:?}",
        b.seen().iter().map(|s| &s.uri).collect::<Vec<_>>()
    );
    assert_eq!(b.requests(), 0);
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_request_after_a_good_one_is_answered_in_order_and_stops_there() {
    let b = Backend::start("b").await;
    let s = sluice(&config("round_robin", &[(&b, 1)], "")).await;
    let a = addr(&s, "public").await;
    let pipelined = format!(
        "GET /first HTTP/1.1\r\nHost: a\r\n\r\nPOST /second HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx{FOLLOW_UP}"
    );
    let resp = within(15, raw(a, pipelined.as_bytes())).await;
    let statuses: Vec<&str> = resp.split("HTTP/1.1 ").skip(1).map(|r| &r[..3]).collect();
    assert_eq!(statuses, ["200", "400"], "{resp}");
    let uris: Vec<String> = b.seen().iter().map(|s| s.uri.clone()).collect();
    assert_eq!(uris, ["/first"]);
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_error_after_the_head_was_forwarded_aborts_with_400() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A backend that answers only once it has the whole body; it counts
    // heads seen and connections that ended without one.
    let heads = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let (h, d) = (heads.clone(), dropped.clone());
    let backend = raw_backend(move |mut s| {
        let (h, d) = (h.clone(), d.clone());
        async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        d.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
                if got.windows(4).any(|w| w == b"\r\n\r\n") && h.load(Ordering::SeqCst) == 0 {
                    h.fetch_add(1, Ordering::SeqCst);
                }
                if got.ends_with(b"0\r\n\r\n") {
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                }
            }
        }
    })
    .await;
    let s = sluice(&format!(
        "[log]\naccess_log = false\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n[[route]]\npool = \"p\"\n[pool.p]\nbackends = [{{ addr = \"{backend}\" }}]\n"
    ))
    .await;
    let a = addr(&s, "public").await;
    let mut conn = tokio::net::TcpStream::connect(a).await.unwrap();
    conn.write_all(
        b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .await
    .unwrap();
    eventually(10, || heads.load(Ordering::SeqCst) == 1).await;
    conn.write_all(b"zz\r\n").await.unwrap();
    let resp = read_to_close(&mut conn, 10).await;
    assert_eq!(status_of(&resp), 400, "{resp}");
    assert!(resp.contains("connection: close"), "{resp}");
    // The backend's connection, with its truncated request, is closed.
    eventually(10, || dropped.load(Ordering::SeqCst) == 1).await;
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_requests_are_forwarded_with_one_framing_header() {
    let b = Backend::start("b").await;
    let s = sluice(&config("round_robin", &[(&b, 1)], "")).await;
    let a = addr(&s, "public").await;
    let resp = raw(
        a,
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert!(resp.ends_with("abc"), "{resp}");
    let seen = b.last();
    assert_eq!(seen.headers.get_all("content-length").iter().count(), 1);
    assert_eq!(seen.headers["content-length"], "3");
    assert!(!seen.headers.contains_key("transfer-encoding"));

    let resp = raw(
        a,
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert!(resp.contains("abc"), "{resp}");
    let seen = b.last();
    assert_eq!(seen.headers["transfer-encoding"], "chunked");
    assert!(!seen.headers.contains_key("content-length"));

    // Empty lines before a request line are ignored (RFC 9112 section 2.2).
    let resp = raw(
        a,
        b"\r\n\r\nGET /after-blank HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(b.last().uri, "/after-blank");
    s.shutdown(Duration::from_secs(1)).await;
}
