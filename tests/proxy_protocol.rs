//! The PROXY protocol on real sockets: v1 and v2 in (the source is the
//! client for X-Forwarded-For and allow/deny), split headers, garbage and
//! silence closed unanswered; v1 and v2 out to backends (each connection
//! names its client and serves one request), and health checks' LOCAL
//! headers.

mod support;

use ppp::{HeaderResult, PartialResult};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A PROXY header as an L4 balancer would send it, built with `ppp`.
fn v2_header(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (source, destination),
    )
    .build()
    .unwrap()
}

async fn exchange(addr: SocketAddr, parts: &[&[u8]]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        s.write_all(p).await.unwrap();
    }
    read_to_close(&mut s, 10).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_take_the_client_from_v1_and_v2_headers_and_close_anything_else() {
    let b = Backend::start("b").await;
    let s = sluice(&format!(
        "[log]\naccess_log = false\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\nproxy_protocol = true\nheader_read_timeout = \"300ms\"\n\
         [[route]]\nname = \"office\"\npath_prefix = \"/office\"\npool = \"p\"\nallow = [\"198.51.100.0/24\"]\n\
         [[route]]\npool = \"p\"\n[pool.p]\nbackends = [{{ addr = \"{}\" }}]\n",
        b.addr
    ))
    .await;
    let a = addr(&s, "public").await;
    let request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    // v1, whole.
    let resp = exchange(
        a,
        &[b"PROXY TCP4 203.0.113.9 10.0.0.1 4711 80\r\n", request],
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(b.last().headers["x-forwarded-for"], "203.0.113.9");
    // v2, split across segments, IPv6.
    let v6: SocketAddr = "[2001:db8::7]:5000".parse().unwrap();
    let header = v2_header(v6, "[2001:db8::1]:443".parse().unwrap());
    let resp = exchange(a, &[&header[..5], &header[5..20], &header[20..], request]).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(b.last().headers["x-forwarded-for"], "2001:db8::7");
    // allow/deny see the source too.
    let office = b"GET /office HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let inside = v2_header("198.51.100.7:1".parse().unwrap(), a);
    assert_eq!(status_of(&exchange(a, &[&inside, office]).await), 200);
    let outside = v2_header("203.0.113.9:1".parse().unwrap(), a);
    assert_eq!(status_of(&exchange(a, &[&outside, office]).await), 403);
    // No header, a broken one, or silence: closed without a response.
    assert_eq!(exchange(a, &[request]).await, "");
    assert_eq!(
        exchange(a, &[b"PROXY TCP4 nonsense\r\n", request]).await,
        ""
    );
    let started = std::time::Instant::now();
    assert_eq!(exchange(a, &[]).await, "");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed by header_read_timeout"
    );
    s.shutdown(Duration::from_secs(1)).await;
}

/// A backend that records the PROXY header of each connection and answers
/// every request on it with 200.
async fn header_backend(seen: Arc<Mutex<Vec<Vec<u8>>>>) -> SocketAddr {
    raw_backend(move |mut s| {
        let seen = seen.clone();
        async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // The header first.
            let len = loop {
                let n = s.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                let parsed = HeaderResult::parse(&buf);
                if parsed.is_complete() {
                    let len = match &parsed {
                        HeaderResult::V1(Ok(h)) => h.header.len(),
                        HeaderResult::V2(Ok(h)) => h.len(),
                        _ => {
                            seen.lock().unwrap().push(b"invalid".to_vec());
                            return;
                        }
                    };
                    break len;
                }
            };
            seen.lock().unwrap().push(buf[..len].to_vec());
            let mut rest = buf[len..].to_vec();
            loop {
                while let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
                    rest.drain(..end + 4);
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                }
                let n = s.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return;
                }
                rest.extend_from_slice(&chunk[..n]);
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_send_v1_and_v2_naming_the_client_on_unpooled_connections() {
    for version in ["v1", "v2"] {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let backend = header_backend(seen.clone()).await;
        let s = sluice(&format!(
            "[log]\naccess_log = false\n[[listener]]\nname = \"edge\"\nbind = \"127.0.0.1:0\"\nproxy_protocol = true\n\
             [[route]]\npool = \"p\"\n[pool.p]\nsend_proxy_protocol = \"{version}\"\nbackends = [{{ addr = \"{backend}\" }}]\n\
             [pool.p.health_check]\ninterval = \"1h\"\n"
        ))
        .await;
        let a = addr(&s, "edge").await;
        // The health check's connection comes first: it names no client.
        eventually(5, || !seen.lock().unwrap().is_empty()).await;
        let check = seen.lock().unwrap()[0].clone();
        match version {
            "v1" => assert_eq!(check, b"PROXY UNKNOWN\r\n"),
            _ => assert!(matches!(
                HeaderResult::parse(&check),
                HeaderResult::V2(Ok(ref h)) if h.command == ppp::v2::Command::Local
            )),
        }
        // Three requests on one keep-alive client connection, from a client
        // an L4 balancer named in its own header.
        let client: SocketAddr = "198.51.100.7:40000".parse().unwrap();
        let mut c = tokio::net::TcpStream::connect(a).await.unwrap();
        c.write_all(&v2_header(client, a)).await.unwrap();
        for _ in 0..3 {
            c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 1024];
            let n = within(5, c.read(&mut buf)).await.unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        }
        let headers = seen.lock().unwrap()[1..].to_vec();
        assert_eq!(
            headers.len(),
            3,
            "one backend connection per request ({version})"
        );
        for h in headers {
            let source = match HeaderResult::parse(&h) {
                HeaderResult::V1(Ok(h)) => match h.addresses {
                    ppp::v1::Addresses::Tcp4(a) => {
                        SocketAddr::from((a.source_address, a.source_port))
                    }
                    other => panic!("{other:?}"),
                },
                HeaderResult::V2(Ok(h)) => match h.addresses {
                    ppp::v2::Addresses::IPv4(a) => {
                        SocketAddr::from((a.source_address, a.source_port))
                    }
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            };
            assert_eq!(source, client, "{version}");
        }
        s.shutdown(Duration::from_secs(1)).await;
    }
}
