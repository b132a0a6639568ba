//! The protocols of the edge, end to end: WebSocket upgrades, h2c by prior
//! knowledge, Expect: 100-continue, HEAD, interim 1xx answers, trailers and
//! chunked bodies, as RFC 9110/9112 ask of a proxy.

mod support;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// A WebSocket backend that echoes every text message as "name: text".
async fn ws_backend(name: &'static str) -> SocketAddr {
    raw_backend(move |stream| async move {
        let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
            return;
        };
        while let Some(Ok(msg)) = ws.next().await {
            let reply = match msg {
                Message::Text(t) => Message::text(format!("{name}: {}", t.as_str())),
                Message::Binary(b) => Message::Binary(b),
                Message::Close(_) => break,
                _ => continue,
            };
            if ws.send(reply).await.is_err() {
                break;
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_round_trips_are_balanced_and_counted_in_flight_while_open() {
    let one = ws_backend("one").await;
    let two = ws_backend("two").await;
    let s = sluice(&format!(
        "[log]\naccess_log = false\n[admin]\nbind = \"127.0.0.1:0\"\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\nmax_header_bytes = 4096\n[[route]]\npool = \"p\"\n[pool.p]\nstrategy = \"round_robin\"\nbackends = [{{ addr = \"{one}\" }}, {{ addr = \"{two}\" }}]\n"
    ))
    .await;
    let a = addr(&s, "public").await;
    let admin = s.admin_addr().await.unwrap();

    let (mut first, resp) = within(
        10,
        tokio_tungstenite::connect_async(format!("ws://{a}/chat")),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 101);
    assert!(resp.headers().contains_key("x-request-id"));
    let (mut second, _) = within(
        10,
        tokio_tungstenite::connect_async(format!("ws://{a}/chat")),
    )
    .await
    .unwrap();
    let mut names = Vec::new();
    for ws in [&mut first, &mut second] {
        ws.send(Message::text("hello")).await.unwrap();
        let reply = within(10, ws.next()).await.unwrap().unwrap();
        names.push(reply.into_text().unwrap().to_string());
    }
    names.sort();
    assert_eq!(
        names,
        ["one: hello", "two: hello"],
        "round robin at upgrade time"
    );

    // Open tunnels are requests in flight.
    assert_eq!(backend_in_flight(admin, one).await, 1.0);
    assert_eq!(backend_in_flight(admin, two).await, 1.0);

    // Far more than max_header_bytes through the tunnel: its bytes are
    // never taken for a request head.
    let big = vec![0xabu8; 256 * 1024];
    first.send(Message::binary(big.clone())).await.unwrap();
    let echoed = within(10, first.next()).await.unwrap().unwrap();
    assert_eq!(echoed.into_data().as_ref(), &big[..]);

    first.close(None).await.unwrap();
    second.close(None).await.unwrap();
    drop((first, second));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while backend_in_flight(admin, one).await + backend_in_flight(admin, two).await > 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "tunnels still counted after close"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_websocket_is_closed_after_idle_timeout() {
    let one = ws_backend("one").await;
    let s = sluice(&format!(
        "[log]\naccess_log = false\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\nidle_timeout = \"400ms\"\n[[route]]\npool = \"p\"\n[pool.p]\nbackends = [{{ addr = \"{one}\" }}]\n"
    ))
    .await;
    let a = addr(&s, "public").await;
    let (mut ws, _) = within(10, tokio_tungstenite::connect_async(format!("ws://{a}/")))
        .await
        .unwrap();
    // Traffic keeps it open past the timeout...
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        ws.send(Message::text("ping")).await.unwrap();
        let reply = within(10, ws.next()).await.unwrap().unwrap();
        assert_eq!(reply.into_text().unwrap().as_str(), "one: ping");
    }
    // ...silence closes it.
    let started = std::time::Instant::now();
    let end = within(10, ws.next()).await;
    assert!(
        !matches!(end, Some(Ok(Message::Text(_)))),
        "expected the tunnel to close, got {end:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_websocket_is_a_connection_and_a_drain_closes_it_within_shutdown_grace() {
    let one = ws_backend("one").await;
    let s = sluice(&format!(
        "[runtime]\nshutdown_grace = \"1s\"\n[log]\naccess_log = false\n[admin]\nbind = \"127.0.0.1:0\"\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n[[route]]\npool = \"p\"\n[pool.p]\nbackends = [{{ addr = \"{one}\" }}]\n"
    ))
    .await;
    let a = addr(&s, "public").await;
    let admin = s.admin_addr().await.unwrap();
    let (mut ws, _) = within(10, tokio_tungstenite::connect_async(format!("ws://{a}/")))
        .await
        .unwrap();
    ws.send(Message::text("hi")).await.unwrap();
    within(10, ws.next()).await.unwrap().unwrap();
    let m = get(&client(), admin, "x", "/metrics").await.body;
    assert!(
        m.contains("sluice_connections_active{listener=\"public\"} 1"),
        "an open tunnel is an active connection"
    );
    let tunnels_counted = |m: &str| {
        m.lines()
            .any(|l| l.starts_with("sluice_requests_total{") && l.contains("code=\"101\""))
    };
    assert!(
        !tunnels_counted(&m),
        "a tunnel is counted when it closes, not at the 101"
    );
    // A drain lets the tunnel run, then closes it before the grace is out.
    let started = std::time::Instant::now();
    let drained = within(10, s.shutdown(Duration::from_secs(5))).await;
    assert!(
        drained,
        "the drain finished with the tunnel closed by sluice"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(4),
        "closed near shutdown_grace: {took:?}"
    );
    let end = within(10, ws.next()).await;
    assert!(!matches!(end, Some(Ok(Message::Text(_)))), "{end:?}");
    let m = s
        .shared()
        .metrics
        .render(std::iter::empty(), std::iter::empty());
    assert!(tunnels_counted(&m), "counted at close:\n{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_refuses_the_upgrade_is_answered_normally() {
    // The ordinary test backend answers 200 to a WebSocket handshake.
    let b = Backend::start("plain").await;
    let s = sluice(&config("round_robin", &[(&b, 1)], "")).await;
    let a = addr(&s, "public").await;
    let mut conn = tokio::net::TcpStream::connect(a).await.unwrap();
    conn.write_all(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = within(10, conn.read(&mut buf)).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let seen = b.last();
    assert_eq!(
        seen.headers["upgrade"], "websocket",
        "the upgrade was offered"
    );
    // The connection is still HTTP: a next request is served.
    conn.write_all(b"GET /again HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let rest = read_to_close(&mut conn, 10).await;
    assert!(rest.contains("HTTP/1.1 200"), "{rest}");
    assert_eq!(b.last().uri, "/again");
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let b = Backend::start("b").await;
    let s = sluice(&config("round_robin", &[(&b, 1)], "")).await;
    let a = addr(&s, "public").await;
    let mut conn = tokio::net::TcpStream::connect(a).await.unwrap();
    conn.write_all(
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = within(10, conn.read(&mut buf)).await.unwrap();
    let interim = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(
        interim.starts_with("HTTP/1.1 100 Continue\r\n"),
        "{interim}"
    );
    conn.write_all(b"hello").await.unwrap();
    // The 200's head may have come in the same read as the 100 (the echo
    // backend answers before the body arrives): it is the rest after the 100.
    let mut rest = interim
        .strip_prefix("HTTP/1.1 100 Continue\r\n\r\n")
        .unwrap_or("")
        .to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !rest.ends_with("hello") {
        assert!(std::time::Instant::now() < deadline, "no echo: {rest}");
        let n = within(10, conn.read(&mut buf)).await.unwrap();
        assert!(n > 0, "closed early: {rest}");
        rest.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(rest.starts_with("HTTP/1.1 200"), "{rest}");
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_answers_carry_the_length_but_no_body_and_the_connection_goes_on() {
    let b = Backend::start("b").await;
    let s = sluice(&config("round_robin", &[(&b, 1)], "")).await;
    let a = addr(&s, "public").await;
    let resp = raw(
        a,
        b"HEAD /bytes/1000 HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (head, rest) = resp.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-length: 1000"),
        "{head}"
    );
    // The next bytes are the second response, not 1000 bytes of body.
    assert!(rest.starts_with("HTTP/1.1 200"), "{rest}");
    assert!(rest.ends_with("\r\n\r\nb"), "{rest}");
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_1xx_from_a_backend_does_not_end_the_exchange() {
    let backend = raw_backend(|mut s| async move {
        let mut buf = vec![0u8; 4096];
        let _ = s.read(&mut buf).await;
        let _ = s
            .write_all(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
            .await;
        let _ = s.read(&mut buf).await;
    })
    .await;
    let s = sluice(&format!(
        "[log]\naccess_log = false\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n[[route]]\npool = \"p\"\n[pool.p]\nbackends = [{{ addr = \"{backend}\" }}]\n"
    ))
    .await;
    let a = addr(&s, "public").await;
    let got = get(&client(), a, "a", "/").await;
    assert_eq!((got.status, got.body.as_str()), (200, "final"));
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_and_chunked_bodies_pass_through() {
    // A backend that answers chunked with a trailer when the client said
    // it takes trailers (TE: trailers), as gRPC servers do.
    let backend = raw_backend(|mut s| async move {
        loop {
            let mut head = Vec::new();
            let mut buf = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(1) => head.push(buf[0]),
                    _ => return,
                }
            }
            let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
            let trailer = if head.contains("\r\nte: trailers\r\n") {
                "grpc-status: 0\r\n"
            } else {
                ""
            };
            let resp = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: grpc-status\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n{trailer}\r\n");
            if s.write_all(resp.as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await;
    let s = sluice(&format!(
        "[log]\naccess_log = false\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n[[route]]\npool = \"p\"\n[pool.p]\nbackends = [{{ addr = \"{backend}\" }}]\n"
    ))
    .await;
    let a = addr(&s, "public").await;
    // HTTP/1.1 client: the chunks arrive, well framed. The trailer does
    // not: the spec drops the Trailer header as hop-by-hop and hyper sends
    // only declared trailer fields; RFC 9112 section 7.1.2 lets a proxy
    // discard trailers.
    let resp = raw(
        a,
        b"GET / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\nConnection: close\r\n\r\n",
    )
    .await;
    let lower = resp.to_ascii_lowercase();
    assert!(lower.contains("transfer-encoding: chunked"), "{resp}");
    assert!(resp.contains("hello") && resp.contains(" world"), "{resp}");
    assert!(lower.ends_with("\r\n0\r\n\r\n"), "{resp}");

    // HTTP/2 client (h2c): the trailer arrives as a trailers frame.
    use http_body_util::BodyExt;
    let req = http::Request::get(format!("http://{a}/"))
        .header("te", "trailers")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = within(10, h2c_client().request(req)).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let collected = within(10, resp.into_body().collect()).await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(collected.to_bytes(), "hello world");

    // A chunked request body streams to the backend.
    let b = Backend::start("b").await;
    let s2 = sluice(&config("round_robin", &[(&b, 1)], "")).await;
    let a2 = addr(&s2, "public").await;
    let resp = raw(
        a2,
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("abc") && resp.contains("defg"), "{resp}");
    s.shutdown(Duration::from_secs(1)).await;
    s2.shutdown(Duration::from_secs(1)).await;
}

/// One HTTP/2 frame: 9-byte header, then the payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

/// Reads frames until one of `kind` arrives; None if the connection closes
/// (or 10 s pass) first.
async fn h2_wait_for(conn: &mut tokio::net::TcpStream, kind: u8) -> Option<(u8, Vec<u8>)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut head = [0u8; 9];
        tokio::time::timeout_at(deadline, conn.read_exact(&mut head))
            .await
            .ok()?
            .ok()?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        tokio::time::timeout_at(deadline, conn.read_exact(&mut payload))
            .await
            .ok()?
            .ok()?;
        if head[3] == kind {
            return Some((head[4], payload));
        }
    }
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_settings_announce_the_limits() {
    let b = Backend::start("b").await;
    let s = sluice(&config("round_robin", &[(&b, 1)], "")).await;
    let a = addr(&s, "public").await;
    let mut conn = tokio::net::TcpStream::connect(a).await.unwrap();
    let mut hello = H2_PREFACE.to_vec();
    hello.extend(h2_frame(4, 0, 0, &[]));
    conn.write_all(&hello).await.unwrap();
    let (_, settings) = h2_wait_for(&mut conn, 4).await.expect("server SETTINGS");
    let mut announced = std::collections::HashMap::new();
    for s in settings.chunks(6) {
        let id = u16::from_be_bytes([s[0], s[1]]);
        let value = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
        announced.insert(id, value);
    }
    assert_eq!(
        announced.get(&0x3),
        Some(&256),
        "max concurrent streams: {announced:?}"
    );
    assert_eq!(
        announced.get(&0x6),
        Some(&65536),
        "max header list size: {announced:?}"
    );
    assert_eq!(
        announced.get(&0x4),
        Some(&(1 << 20)),
        "stream window: {announced:?}"
    );
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_rapid_reset_flood_is_cut_off_with_goaway() {
    let b = Backend::start("b").await;
    b.set_delay(Duration::from_millis(50));
    let s = sluice(&config("round_robin", &[(&b, 1)], "")).await;
    let a = addr(&s, "public").await;
    let mut conn = tokio::net::TcpStream::connect(a).await.unwrap();
    let mut flood = H2_PREFACE.to_vec();
    flood.extend(h2_frame(4, 0, 0, &[]));
    // GET / with :authority "a" (HPACK: indexed :method GET, :scheme
    // http, :path /; literal :authority), each stream reset at once.
    let headers = [0x82, 0x86, 0x84, 0x01, 0x01, b'a'];
    for i in 0..2000u32 {
        let stream = 2 * i + 1;
        flood.extend(h2_frame(1, 0x5, stream, &headers));
        flood.extend(h2_frame(3, 0, stream, &8u32.to_be_bytes()));
    }
    // The server may close while the flood is still being written.
    let _ = within(10, conn.write_all(&flood)).await;
    let goaway = h2_wait_for(&mut conn, 7).await;
    let (_, payload) = goaway.expect("a GOAWAY frame");
    let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
    assert_eq!(code, 0xb, "ENHANCE_YOUR_CALM expected, got {code:#x}");
    assert!(
        b.requests() < 2000,
        "the flood was cut off: {}",
        b.requests()
    );
    // Other clients are still served.
    assert_eq!(get(&client(), a, "a", "/").await.status, 200);
    s.shutdown(Duration::from_secs(1)).await;
}

/// An HTTP/2 client connection by prior knowledge; the returned task ends
/// when the connection does (a GOAWAY with no stream left ends it cleanly).
async fn h2_connection(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    (send, tokio::spawn(conn))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connections_get_goaway_when_idle_and_when_draining() {
    let b = Backend::start("b").await;
    let s = sluice(&format!(
        "[log]\naccess_log = false\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\nidle_timeout = \"300ms\"\n[[route]]\npool = \"p\"\n[pool.p]\nbackends = [{{ addr = \"{}\" }}]\n",
        b.addr
    ))
    .await;
    let a = addr(&s, "public").await;
    let get_one = |mut send: hyper::client::conn::http2::SendRequest<_>| async move {
        let req = http::Request::get(format!("http://{a}/"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        within(10, send.send_request(req)).await.unwrap().status()
    };
    // Idle: the connection ends by itself, cleanly, after idle_timeout.
    // (The client keeps its handle: a client that drops it ends the
    // connection itself.)
    let (send, conn) = h2_connection(a).await;
    assert_eq!(get_one(send.clone()).await, 200);
    let started = std::time::Instant::now();
    let ended = within(5, conn).await.unwrap();
    assert!(ended.is_ok(), "GOAWAY, not a reset: {ended:?}");
    assert!(started.elapsed() >= Duration::from_millis(200));

    s.shutdown(Duration::from_secs(1)).await;

    // Draining: a connection of a listener whose idle_timeout is far off
    // gets GOAWAY as soon as the drain begins.
    let s = sluice(&format!(
        "[log]\naccess_log = false\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\nidle_timeout = \"60s\"\n[[route]]\npool = \"p\"\n[pool.p]\nbackends = [{{ addr = \"{}\" }}]\n",
        b.addr
    ))
    .await;
    let a = addr(&s, "public").await;
    let (send2, conn) = h2_connection(a).await;
    let req = http::Request::get(format!("http://{a}/"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = within(10, send2.clone().send_request(req)).await.unwrap();
    assert_eq!(resp.status(), 200);
    let started = std::time::Instant::now();
    let drained = within(10, s.shutdown(Duration::from_secs(5))).await;
    assert!(drained);
    let ended = within(5, conn).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the drain, not idle_timeout (60 s), ended it"
    );
    assert!(ended.is_ok(), "GOAWAY, not a reset: {ended:?}");
    drop((send, send2));
}
