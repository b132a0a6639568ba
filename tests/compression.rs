//! Response compression: the coding by Accept-Encoding (q-values), only
//! for the SPEC's types and sizes, never for HEAD, 204/304/206 or bodies
//! already encoded, with Vary; streamed (each piece decodable at once).

mod support;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn json(n: usize) -> Vec<u8> {
    let mut out = b"[".to_vec();
    let mut i = 0;
    while out.len() < n {
        out.extend_from_slice(format!("{{\"id\":{i},\"name\":\"item {i}\"}},").as_bytes());
        i += 1;
    }
    out.truncate(n);
    out
}

/// A raw backend: answers by path, one request per connection.
async fn backend(release: Arc<tokio::sync::Notify>) -> std::net::SocketAddr {
    raw_backend(move |mut s| {
        let release = release.clone();
        async move {
            let mut head = Vec::new();
            let mut b = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut b).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&b[..n]),
                }
            }
            let text = String::from_utf8_lossy(&head).to_string();
            let path = text.split(' ').nth(1).unwrap_or("/").to_string();
            let fixed = |status: &str, headers: &str, body: &[u8]| {
                let mut r = format!(
                    "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                if !text.starts_with("HEAD") {
                    r.extend_from_slice(body);
                }
                r
            };
            let big = json(10_000);
            let resp = match path.as_str() {
                "/json" => fixed("200 OK", "content-type: application/json; charset=utf-8\r\netag: \"v1\"\r\n", &big),
                "/small" => fixed("200 OK", "content-type: application/json\r\n", &big[..100]),
                "/png" => fixed("200 OK", "content-type: image/png\r\n", &big),
                "/encoded" => fixed("200 OK", "content-type: text/plain\r\ncontent-encoding: gzip\r\n", &big),
                "/no-transform" => fixed("200 OK", "content-type: text/html\r\ncache-control: public, no-transform\r\n", &big),
                "/range" => fixed("206 Partial Content", "content-type: text/plain\r\ncontent-range: bytes 0-9999/20000\r\n", &big),
                "/close" => {
                    // Delimited by close, no length.
                    let mut r = b"HTTP/1.1 200 OK\r\ncontent-type: text/csv\r\nconnection: close\r\n\r\n".to_vec();
                    r.extend_from_slice(&big);
                    let _ = s.write_all(&r).await;
                    return;
                }
                "/events" => {
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
                        .await;
                    let _ = s.write_all(b"10\r\ndata: first....\n\r\n").await;
                    release.notified().await;
                    let _ = s.write_all(b"10\r\ndata: second...\n\r\n0\r\n\r\n").await;
                    return;
                }
                _ => fixed("404 Not Found", "", b""),
            };
            let _ = s.write_all(&resp).await;
        }
    })
    .await
}

fn decode(coding: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "gzip" => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .unwrap();
        }
        "br" => {
            brotli::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        "zstd" => out = zstd::decode_all(body).unwrap(),
        "" => out = body.to_vec(),
        c => panic!("unexpected coding {c}"),
    }
    out
}

struct Fetched {
    status: u16,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

async fn fetch(c: &TestClient, method: &str, url: String, accept: &str) -> Fetched {
    let req = Request::builder()
        .method(method)
        .uri(url)
        .header("host", "x")
        .header("accept-encoding", accept)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = within(10, c.request(req)).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = within(10, body.collect())
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Fetched {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

fn header<'a>(f: &'a Fetched, name: &str) -> &'a str {
    f.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn start() -> (Sluice, std::net::SocketAddr, Arc<tokio::sync::Notify>) {
    let release = Arc::new(tokio::sync::Notify::new());
    let b = backend(release.clone()).await;
    let s = sluice(&format!(
        "[log]\naccess_log = false\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n\
         [[route]]\nname = \"plain\"\npath_prefix = \"/plain\"\nstrip_prefix = true\npool = \"p\"\n\
         [[route]]\nname = \"app\"\ncompress = true\npool = \"p\"\n\
         [pool.p]\nbackends = [{{ addr = \"{b}\" }}]\n"
    ))
    .await;
    let a = addr(&s, "public").await;
    (s, a, release)
}
use sluice::Sluice;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_best_coding_for_text_like_bodies() {
    let (_s, a, _release) = start().await;
    let want = json(10_000);
    for c in [client(), h2c_client()] {
        for (accept, coding) in [
            ("gzip", "gzip"),
            ("br", "br"),
            ("zstd", "zstd"),
            ("gzip, deflate, br, zstd", "zstd"),
            ("gzip;q=1.0, br;q=0.5", "gzip"),
            ("br;q=0, gzip;q=0.1", "gzip"),
            ("*", "zstd"),
            ("identity", ""),
            ("", ""),
        ] {
            let f = fetch(&c, "GET", format!("http://{a}/json"), accept).await;
            assert_eq!(f.status, 200);
            assert_eq!(header(&f, "content-encoding"), coding, "{accept}");
            assert_eq!(header(&f, "vary"), "accept-encoding", "{accept}");
            assert_eq!(decode(coding, &f.body), want, "{accept}");
            if !coding.is_empty() {
                assert!(f.body.len() < want.len() / 2, "{accept}: {}", f.body.len());
                assert!(f.headers.get("content-length").is_none() || c_is_h2(&f));
            } else {
                assert_eq!(header(&f, "content-length"), "10000");
            }
        }
        // A body of unknown length (close-delimited) is compressed too.
        let f = fetch(&c, "GET", format!("http://{a}/close"), "gzip").await;
        assert_eq!(header(&f, "content-encoding"), "gzip");
        assert_eq!(decode("gzip", &f.body), want);
        // Not compressed: too small, not text-like, already encoded,
        // no-transform, a range, and HEAD; and a route without compress.
        for path in [
            "/small",
            "/png",
            "/encoded",
            "/no-transform",
            "/range",
            "/plain/json",
        ] {
            let f = fetch(&c, "GET", format!("http://{a}{path}"), "gzip, br, zstd").await;
            assert_eq!(
                header(&f, "content-encoding"),
                if path == "/encoded" { "gzip" } else { "" },
                "{path}"
            );
            assert!(matches!(f.status, 200 | 206), "{path}");
            let n = if path == "/small" { 100 } else { 10_000 };
            assert_eq!(f.body.len(), n, "{path}");
            assert_eq!(header(&f, "vary"), "", "{path}");
        }
        let f = fetch(&c, "HEAD", format!("http://{a}/json"), "gzip").await;
        assert_eq!(header(&f, "content-encoding"), "");
        assert!(f.body.is_empty());
    }
    // HTTP/1.0 clients get the plain body (as nginx's gzip_http_version 1.1).
    let resp = raw(
        a,
        b"GET /json HTTP/1.0\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n",
    )
    .await;
    assert!(!resp.contains("content-encoding"), "{}", &resp[..300]);
    assert!(resp.ends_with(std::str::from_utf8(&want).unwrap()));
}

fn c_is_h2(f: &Fetched) -> bool {
    // hyper's h2 server may add a content-length it computed; never the
    // backend's uncompressed one.
    header(f, "content-length") != "10000"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_stream_is_decodable_piece_by_piece() {
    let (_s, a, release) = start().await;
    let req = Request::get(format!("http://{a}/events"))
        .header("host", "x")
        .header("accept-encoding", "gzip")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = within(10, client().request(req)).await.unwrap();
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let mut body = resp.into_body();
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    // The first event decodes before the backend sends the second.
    within(10, async {
        loop {
            let frame = body.frame().await.unwrap().unwrap();
            if let Some(d) = frame.data_ref() {
                std::io::Write::write_all(&mut decoder, d).unwrap();
                std::io::Write::flush(&mut decoder).unwrap();
            }
            if decoder.get_ref().ends_with(b"data: first....\n") {
                break;
            }
        }
    })
    .await;
    release.notify_one();
    while let Some(frame) = within(10, body.frame()).await {
        if let Some(d) = frame.unwrap().data_ref() {
            std::io::Write::write_all(&mut decoder, d).unwrap();
        }
    }
    let all = decoder.finish().unwrap();
    assert_eq!(all, b"data: first....\ndata: second...\n");
    tokio::time::sleep(Duration::from_millis(10)).await;
}
