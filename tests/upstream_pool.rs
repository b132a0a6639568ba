//! The backend connection pool: a connection goes back to the pool when its
//! response has ended, and only then; a pooled connection the backend has
//! closed costs no request, not even a non-idempotent one.

mod support;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn finished_responses_free_their_connection_for_the_next_request() {
    let b = Backend::start("b").await;
    let s = sluice(&config("round_robin", &[(&b, 1)], "")).await;
    let addr = addr(&s, "public").await;
    let c = client();
    // Sized, streamed (several frames), HEAD (no body read at all) and an
    // error status: each ends its response and frees the connection.
    for i in 0..5 {
        assert_eq!(get(&c, addr, "a", "/").await.body, "b");
        let got = get(&c, addr, "a", "/bytes/300000").await;
        assert_eq!(got.body.len(), 300_000, "round {i}");
        let head = http::Request::head(format!("http://{addr}/"))
            .header("host", "a")
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(send(&c, head).await.status, 200);
    }
    b.set_status(503);
    assert_eq!(get(&c, addr, "a", "/").await.status, 503);
    assert_eq!(
        b.connections(),
        1,
        "sequential requests should share one backend connection"
    );
}

#[tokio::test]
async fn an_abandoned_response_closes_its_connection_instead_of_pooling_it() {
    let b = Backend::start("b").await;
    let s = sluice(&config("round_robin", &[(&b, 1)], "")).await;
    let addr = addr(&s, "public").await;
    // A raw client reads the head of a large response and hangs up.
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /bytes/50000000 HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = within(10, conn.read(&mut buf)).await.unwrap();
    assert_eq!(status_of(&String::from_utf8_lossy(&buf[..n])), 200);
    drop(conn);
    // The next request must not land on that connection (whose response is
    // still half unread): it gets a whole, correct answer.
    let c = client();
    let got = get(&c, addr, "a", "/bytes/1000").await;
    assert_eq!((got.status, got.body.len()), (200, 1000));
    assert_eq!(b.connections(), 2);
}

#[tokio::test]
async fn a_backend_closing_idle_connections_costs_no_request() {
    // A backend that answers one request per connection, says keep-alive,
    // then closes: every pooled connection is dead by its next use, whether
    // or not sluice has noticed yet.
    let served = Arc::new(AtomicUsize::new(0));
    let seen = served.clone();
    let backend = raw_backend(move |mut s| {
        let served = seen.clone();
        async move {
            let mut buf = vec![0u8; 8192];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            served.fetch_add(1, Ordering::SeqCst);
            let _ = s
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok",
                )
                .await;
            // Closed a moment later, once sluice has pooled the connection.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    let toml = format!(
        "[log]\naccess_log = false\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n[[route]]\npool = \"p\"\n[pool.p]\nbackends = [{{ addr = \"{backend}\" }}]\n"
    );
    let s = sluice(&toml).await;
    let addr = addr(&s, "public").await;
    let c = client();
    for i in 0..20 {
        // POST is not replayable and sluice has no retry policy here: only
        // the pool's rule (a request the connection never took goes to the
        // next one) can save it.
        let req = http::Request::post(format!("http://{addr}/"))
            .header("host", "a")
            .body(Full::new(Bytes::from_static(b"payload")))
            .unwrap();
        let got = send(&c, req).await;
        assert_eq!((got.status, got.body.as_str()), (200, "ok"), "request {i}");
        // The next request comes after the backend closed this connection.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(served.load(Ordering::SeqCst), 20);
    // A response body read to its end by hand also works after all that.
    let resp = within(
        10,
        c.request(
            http::Request::get(format!("http://{addr}/"))
                .header("host", "a")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        ),
    )
    .await
    .unwrap();
    let body = within(10, resp.into_body().collect()).await.unwrap();
    assert_eq!(body.to_bytes(), "ok");
}
