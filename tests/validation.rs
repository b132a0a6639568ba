//! What the HTTP/1 engine refuses or rewrites that a lenient proxy would
//! pass on: hosts that are not one host, `*` targets other than OPTIONS,
//! CONNECT, a chunked trailer line without a colon, the hop-by-hop TE, and
//! every refusal keeps the client's request id and is logged and counted.

mod support;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FOLLOW_UP: &str = "GET /follow-up HTTP/1.1\r\nHost: a\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_that_are_not_one_host_and_stray_asterisks_are_400() {
    let b = Backend::start("b").await;
    let s = sluice(&config("round_robin", &[(&b, 1)], "")).await;
    let a = addr(&s, "public").await;
    for (what, request) in [
        ("a list", "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n"),
        ("userinfo", "GET / HTTP/1.1\r\nHost: user@a\r\n\r\n"),
        ("a space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
        (
            "authority with userinfo",
            "GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n",
        ),
        (
            "empty authority",
            "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n",
        ),
        ("GET *", "GET * HTTP/1.1\r\nHost: a\r\n\r\n"),
    ] {
        let resp = within(15, raw(a, format!("{request}{FOLLOW_UP}").as_bytes())).await;
        assert_eq!(status_of(&resp), 400, "{what}: {resp}");
        assert_eq!(resp.matches("HTTP/1.1 ").count(), 1, "{what}: {resp}");
    }
    assert_eq!(b.requests(), 0, "the backend saw {:?}", b.seen());
    // OPTIONS * is routed as "/" and forwarded as it came.
    let resp = raw(
        a,
        b"OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    let seen = b.last();
    assert_eq!((seen.method.as_str(), seen.uri.as_str()), ("OPTIONS", "*"));
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_405_with_allow() {
    let b = Backend::start("b").await;
    let s = sluice(&config("round_robin", &[(&b, 1)], "")).await;
    let a = addr(&s, "public").await;
    let resp = raw(
        a,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 405, "{resp}");
    assert!(resp.contains("allow: GET"), "{resp}");
    assert!(resp.contains("request id"), "{resp}");
    assert_eq!(b.requests(), 0);
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trailer_line_without_a_colon_is_the_clients_fault() {
    // With the head: refused before any backend sees the request.
    let b = Backend::start("b").await;
    let s = sluice(&config("round_robin", &[(&b, 1)], "")).await;
    let a = addr(&s, "public").await;
    let resp = raw(
        a,
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nno colon here\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 400, "{resp}");
    assert_eq!(b.requests(), 0);
    s.shutdown(Duration::from_secs(1)).await;

    // After the head went to a backend: still 400, and the backend's
    // connection (with its truncated request) is closed.
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    let heads = Arc::new(AtomicUsize::new(0));
    let h = heads.clone();
    let backend = raw_backend(move |mut s| {
        let (d, h) = (d.clone(), h.clone());
        async move {
            let mut buf = [0u8; 1024];
            let mut got = Vec::new();
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        d.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
                if got.windows(4).any(|w| w == b"\r\n\r\n") {
                    h.store(1, Ordering::SeqCst);
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
        b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
    )
    .await
    .unwrap();
    eventually(10, || heads.load(Ordering::SeqCst) == 1).await;
    conn.write_all(b"0\r\nX-Fine: 1\r\nbroken\r\n\r\n")
        .await
        .unwrap();
    let resp = read_to_close(&mut conn, 10).await;
    assert_eq!(status_of(&resp), 400, "{resp}");
    assert!(resp.contains("trailer"), "{resp}");
    eventually(10, || dropped.load(Ordering::SeqCst) == 1).await;
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn te_is_hop_by_hop_towards_an_http1_backend() {
    let b = Backend::start("b").await;
    let s = sluice(&config("round_robin", &[(&b, 1)], "")).await;
    let a = addr(&s, "public").await;
    let resp = raw(
        a,
        b"GET / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\nConnection: close, TE\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    let seen = b.last();
    assert!(!seen.headers.contains_key("te"), "{:?}", seen.headers);
    assert!(
        !seen.headers.contains_key("connection"),
        "{:?}",
        seen.headers
    );
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_keeps_the_clients_request_id_and_is_logged_and_counted() {
    let b = Backend::start("b").await;
    let port = free_port();
    let admin = free_port();
    let path = temp_file(
        "sluice.toml",
        &format!(
            "[admin]\nbind = \"127.0.0.1:{admin}\"\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:{port}\"\n[[route]]\npool = \"p\"\n[pool.p]\nbackends = [{{ addr = \"{}\" }}]\n",
            b.addr
        ),
    );
    let mut child = Child::spawn(&["--config", path.to_str().unwrap()]);
    let a: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let admin: std::net::SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    wait_until_serving(a, "/", 20).await;
    // Content-Length with Transfer-Encoding: the client's id is kept.
    let resp = raw(
        a,
        b"POST / HTTP/1.1\r\nHost: a\r\nX-Request-Id: mine-1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 400, "{resp}");
    assert!(resp.contains("x-request-id: mine-1\r\n"), "{resp}");
    assert!(resp.contains("(request id mine-1)"), "{resp}");
    // An empty authority and CONNECT: refused, and counted like any request.
    assert_eq!(
        status_of(
            &raw(
                a,
                b"GET http:///x HTTP/1.1\r\nHost: a\r\nX-Request-Id: mine-2\r\n\r\n"
            )
            .await
        ),
        400
    );
    assert_eq!(
        status_of(
            &raw(
                a,
                b"CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\nX-Request-Id: mine-3\r\n\r\n"
            )
            .await
        ),
        405
    );
    let metrics = get(&client(), admin, "x", "/metrics").await.body;
    let count = |code: &str| -> f64 {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("sluice_requests_total{")
                    && l.contains("route=\"none\"")
                    && l.contains(&format!("code=\"{code}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(count("400"), 2.0, "{metrics}");
    assert_eq!(count("405"), 1.0, "{metrics}");
    child.signal("TERM");
    assert_eq!(child.wait_exit(10).await, Some(0));
    let mut out = String::new();
    std::io::Read::read_to_string(child.0.stdout.as_mut().unwrap(), &mut out).unwrap();
    for (id, status) in [("mine-1", 400), ("mine-2", 400), ("mine-3", 405)] {
        assert!(
            out.lines().any(|l| l.contains("sluice::access")
                && l.contains(&format!("\"request_id\":\"{id}\""))
                && l.contains(&format!("\"status\":{status}"))),
            "no access log line for {id}:\n{out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluices_own_answers_honour_the_clients_connection_close() {
    let b = Backend::start("b").await;
    let s = sluice(&format!(
        "[log]\naccess_log = false\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n[[route]]\npath_prefix = \"/app\"\npool = \"p\"\n[pool.p]\nbackends = [{{ addr = \"{}\" }}]\n",
        b.addr
    ))
    .await;
    let a = addr(&s, "public").await;
    let mut conn = tokio::net::TcpStream::connect(a).await.unwrap();
    conn.write_all(b"GET /nowhere HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let resp = read_to_close(&mut conn, 10).await;
    assert_eq!(status_of(&resp), 404, "{resp}");
    assert!(resp.contains("connection: close\r\n"), "{resp}");
    assert!(started.elapsed() < Duration::from_secs(5), "not closed");
    // HTTP/1.0 without keep-alive: the same.
    let resp = raw(a, b"GET /nowhere HTTP/1.0\r\n\r\n").await;
    assert_eq!(status_of(&resp), 404, "{resp}");
    s.shutdown(Duration::from_secs(1)).await;
}
