//! Per-route limits: max_body_bytes (413 at once or mid-stream, and the
//! backend never sees a complete oversized request), the route's timeout,
//! and rate-limit keys (client IP, a header, the whole route).

mod support;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A request body fed from a channel: no length, streamed.
struct ChanBody(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for ChanBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|d| d.map(|d| Ok(http_body::Frame::data(d))))
    }
}

fn one_route(backend: &str, route: &str, pool: &str) -> String {
    format!(
        "[log]\naccess_log = false\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n\
         [[route]]\nname = \"r\"\npool = \"p\"\n{route}\n[pool.p]\nbackends = [{{ addr = \"{backend}\" }}]\n{pool}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_gets_413_and_never_reaches_the_backend_whole() {
    // A raw backend that counts the request bodies it received to their end.
    let complete = Arc::new(AtomicUsize::new(0));
    let seen = complete.clone();
    let backend = raw_backend(move |mut s| {
        let complete = seen.clone();
        async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 8192];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
                if got.ends_with(b"0\r\n\r\n") || got.ends_with(b"aaaa") {
                    complete.fetch_add(1, Ordering::SeqCst);
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                    return;
                }
            }
        }
    })
    .await;
    let s = sluice(&one_route(
        &backend.to_string(),
        "max_body_bytes = 1000",
        "",
    ))
    .await;
    let a = addr(&s, "public").await;
    // Content-Length over the limit: 413 at once, nothing forwarded.
    let resp = raw(
        a,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 413, "{resp}");
    assert!(resp.contains("connection: close"), "{resp}");
    // Chunked, passing the limit mid-stream: 413, the backend's connection
    // closed before the body's end.
    let mut c = tokio::net::TcpStream::connect(a).await.unwrap();
    c.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    // (Bytes other than the backend's "aaaa" end mark, so a forwarded first
    // chunk never looks like a complete small body to it.)
    for _ in 0..3 {
        let _ = c.write_all(b"190\r\n").await;
        let _ = c.write_all(&[b'b'; 400]).await;
        let _ = c.write_all(b"\r\n").await;
    }
    let _ = c.write_all(b"0\r\n\r\n").await;
    let resp = read_to_close(&mut c, 10).await;
    assert_eq!(status_of(&resp), 413, "{resp}");
    // Within the limit: forwarded whole.
    let resp = raw(
        a,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\naaaa",
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        complete.load(Ordering::SeqCst),
        1,
        "only the small body arrived whole"
    );

    // HTTP/2: the same limits.
    let b = Backend::start("b").await;
    let s2 = sluice(&one_route(&b.addr.to_string(), "max_body_bytes = 1000", "")).await;
    let a2 = addr(&s2, "public").await;
    let h2 = h2c_client();
    let post = |n: usize| {
        Request::post(format!("http://{a2}/echo"))
            .header("host", "x")
            .body(Full::new(Bytes::from(vec![b'z'; n])))
            .unwrap()
    };
    assert_eq!(send(&h2, post(5000)).await.status, 413);
    assert_eq!(send(&h2, post(1000)).await.body.len(), 1000);
    // A streamed h2 body without a length (to a backend that answers only
    // after a while: an answer already begun cannot become a 413).
    b.set_delay(Duration::from_millis(500));
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let req = Request::post(format!("http://{a2}/"))
        .header("host", "x")
        .body(ChanBody(rx))
        .unwrap();
    let h2s = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<ChanBody>();
    let sending = tokio::spawn(async move {
        for _ in 0..10 {
            if tx.send(Bytes::from(vec![b'q'; 300])).await.is_err() {
                break;
            }
        }
    });
    let resp = within(10, h2s.request(req)).await.unwrap();
    assert_eq!(resp.status(), 413);
    let _ = sending.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_timeout_replaces_the_pools() {
    let b = Backend::start("slow").await;
    b.set_delay(Duration::from_millis(600));
    let toml = format!(
        "[log]\naccess_log = false\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n\
         [[route]]\nname = \"quick\"\npath_prefix = \"/quick\"\ntimeout = \"150ms\"\npool = \"p\"\n\
         [[route]]\nname = \"rest\"\npool = \"p\"\n\
         [pool.p]\nbackends = [{{ addr = \"{}\" }}]\nrequest_timeout = \"5s\"\n[pool.p.retry]\nattempts = 0\n",
        b.addr
    );
    let s = sluice(&toml).await;
    let a = addr(&s, "public").await;
    for c in [client(), h2c_client()] {
        assert_eq!(get(&c, a, "x", "/quick").await.status, 504);
        assert_eq!(get(&c, a, "x", "/other").await.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_keys_client_ip_header_and_route() {
    let b = Backend::start("b").await;
    let limited = |key: &str| {
        format!("[route.rate_limit]\nrequests_per_second = 0.001\nburst = 2\nkey = \"{key}\"")
    };
    let c = client();
    let req = |a: std::net::SocketAddr, key: Option<&str>| {
        let mut r = Request::get(format!("http://{a}/")).header("host", "x");
        if let Some(k) = key {
            r = r.header("x-api-key", k);
        }
        r.body(Full::new(Bytes::new())).unwrap()
    };
    // One bucket per header value; requests without it share one.
    let s = sluice(&one_route(&b.addr.to_string(), "", "").replace(
        "[pool.p]",
        &format!("{}\n[pool.p]", limited("header:X-Api-Key")),
    ))
    .await;
    let a = addr(&s, "public").await;
    for key in [Some("alpha"), Some("beta"), None] {
        assert_eq!(send(&c, req(a, key)).await.status, 200);
        assert_eq!(send(&c, req(a, key)).await.status, 200);
        let got = send(&c, req(a, key)).await;
        assert_eq!(got.status, 429, "{key:?}");
        assert!(!got.header("retry-after").is_empty());
    }
    // One bucket for the whole route, whoever asks.
    let s = sluice(
        &one_route(&b.addr.to_string(), "", "")
            .replace("[pool.p]", &format!("{}\n[pool.p]", limited("route"))),
    )
    .await;
    let a = addr(&s, "public").await;
    assert_eq!(send(&c, req(a, Some("x"))).await.status, 200);
    assert_eq!(send(&c, req(a, Some("y"))).await.status, 200);
    assert_eq!(send(&c, req(a, Some("z"))).await.status, 429);
    assert_eq!(send(&h2c_client(), req(a, None)).await.status, 429);
    // scope = "global" needs Redis: refused with its key.
    let e = sluice::config::Config::parse(&one_route("127.0.0.1:1", "", "").replace(
        "[pool.p]",
        "[route.rate_limit]\nscope = \"global\"\n[pool.p]",
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("route[0].rate_limit.scope"), "{e}");
}
