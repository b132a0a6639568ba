//! Idle keep-alive connections are parked: hyper lets go of them (and of
//! its buffers) and sluice waits on the bare socket. A parked connection
//! must behave exactly like an idle one: its next request is served, the
//! idle timeout still ends it, a drain closes it, and it costs little memory.

mod support;
use std::net::SocketAddr;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Longer than sluice's parking delay.
const PARKED: Duration =
    Duration::from_millis(sluice::http1::conn::PARK_AFTER.as_millis() as u64 * 5);

/// Reads one response with a Content-Length body from `s`.
async fn read_response(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    within(10, async {
        loop {
            let text = String::from_utf8_lossy(&got).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let len = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if got.len() >= end + 4 + len {
                    return;
                }
            }
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed mid-response: {text}");
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn a_parked_connection_serves_its_next_requests() {
    let b = Backend::start("b").await;
    let s = sluice(&config("round_robin", &[(&b, 1)], "")).await;
    let a = addr(&s, "public").await;
    let mut c = TcpStream::connect(a).await.unwrap();
    for i in 0..3 {
        c.write_all(format!("GET /r{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let resp = read_response(&mut c).await;
        assert_eq!(status_of(&resp), 200, "{resp}");
        assert!(resp.ends_with("\r\n\r\nb"), "{resp}");
        tokio::time::sleep(PARKED).await;
    }
    // Two pipelined requests wake a parked connection in one write; a
    // request split across writes, another.
    c.write_all(b"GET /p1 HTTP/1.1\r\nHost: a\r\n\r\nGET /p2 HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(status_of(&read_response(&mut c).await), 200);
    assert_eq!(status_of(&read_response(&mut c).await), 200);
    tokio::time::sleep(PARKED).await;
    c.write_all(b"GET /s HTTP/1.1\r\nHo").await.unwrap();
    tokio::time::sleep(PARKED).await;
    c.write_all(b"st: a\r\n\r\n").await.unwrap();
    assert_eq!(status_of(&read_response(&mut c).await), 200);
    let paths: Vec<String> = b.seen().into_iter().map(|s| s.uri).collect();
    assert_eq!(paths, ["/r0", "/r1", "/r2", "/p1", "/p2", "/s"]);
    // A bad request after parking is still refused like any other.
    tokio::time::sleep(PARKED).await;
    c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        .await
        .unwrap();
    let resp = read_to_close(&mut c, 10).await;
    assert_eq!(status_of(&resp), 400, "{resp}");
    assert_eq!(b.requests(), 6);
}

#[tokio::test]
async fn a_parked_connection_still_ends_at_idle_timeout() {
    let b = Backend::start("b").await;
    let toml = config("round_robin", &[(&b, 1)], "").replace(
        "bind = \"127.0.0.1:0\"",
        "bind = \"127.0.0.1:0\"\nidle_timeout = \"1s\"",
    );
    let s = sluice(&toml).await;
    let a = addr(&s, "public").await;
    let mut c = TcpStream::connect(a).await.unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(status_of(&read_response(&mut c).await), 200);
    let idle_from = Instant::now();
    let mut buf = [0u8; 64];
    let n = within(10, c.read(&mut buf)).await.unwrap_or(0);
    let idled = idle_from.elapsed();
    assert_eq!(n, 0, "expected a close, got bytes");
    assert!(
        idled >= Duration::from_millis(900),
        "closed after {idled:?}, before the 1 s idle timeout"
    );
}

#[tokio::test]
async fn a_drain_closes_parked_connections_at_once() {
    let b = Backend::start("b").await;
    let s = sluice(&config("round_robin", &[(&b, 1)], "")).await;
    let a = addr(&s, "public").await;
    let mut parked = TcpStream::connect(a).await.unwrap();
    parked
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(status_of(&read_response(&mut parked).await), 200);
    tokio::time::sleep(PARKED).await;
    // A request in flight during the drain still gets its answer.
    b.set_delay(Duration::from_millis(300));
    let mut busy = TcpStream::connect(a).await.unwrap();
    busy.write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    eventually(5, || b.requests() == 2).await;
    let started = Instant::now();
    let (drained, resp) = tokio::join!(
        s.shutdown(Duration::from_secs(10)),
        read_response(&mut busy)
    );
    assert!(drained, "drain did not finish in its grace time");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(status_of(&resp), 200, "{resp}");
    let mut buf = [0u8; 64];
    assert_eq!(within(5, parked.read(&mut buf)).await.unwrap_or(0), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_cost_little_memory() {
    let b = Backend::start("b").await;
    // 2,000 connections, each after one request: the test holds one end of
    // each, sluice the other (the default soft limit of 1024 files is
    // raised as a server's init system would).
    let n: usize = 2_000;
    let _ = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &std::process::id().to_string(),
            "--nofile=8192:8192",
        ])
        .status();
    let port = free_port();
    let path = temp_file(
        "sluice.toml",
        &format!(
            "[log]\naccess_log = false\nlevel = \"error\"\n[runtime]\nworker_threads = 1\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:{port}\"\n[[route]]\npool = \"p\"\n[pool.p]\nbackends = [{{ addr = \"{}\" }}]\n",
            b.addr
        ),
    );
    let child = Child::spawn(&["--config", path.to_str().unwrap()]);
    let a: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_until_serving(a, "/", 20).await;
    let pid = child.0.id();
    let before = rss(pid);
    let mut idle = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = within(10, TcpStream::connect(a)).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(status_of(&read_response(&mut c).await), 200);
        idle.push(c);
    }
    tokio::time::sleep(PARKED * 4).await;
    let per_conn = rss(pid).saturating_sub(before) / n as u64;
    println!("{n} idle keep-alive connections: sluice RSS grew {per_conn} bytes per connection");
    // hyper alone keeps 16 KiB of buffers per HTTP/1 connection.
    assert!(per_conn < 8 * 1024, "{per_conn} bytes per idle connection");
    // And every one of them still works.
    for c in idle.iter_mut().step_by(97) {
        c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(status_of(&read_response(c).await), 200);
    }
}
