//! Several workers, the nginx way: each a single-threaded runtime with its
//! own SO_REUSEPORT socket of the listener. Connections spread over them,
//! counts and metrics add up across them, and a reload and a drain reach
//! every one.

mod support;
use std::net::SocketAddr;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads one response with a Content-Length body.
async fn response(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    within(20, async {
        loop {
            let text = String::from_utf8_lossy(&got).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let len: usize = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if got.len() >= end + 4 + len {
                    return;
                }
            }
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed mid-response: {text}");
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    String::from_utf8_lossy(&got).into_owned()
}

fn toml(a: SocketAddr, b: SocketAddr, with_new_route: bool) -> String {
    let extra = if with_new_route {
        "[[route]]\npath_prefix = \"/new\"\npool = \"q\"\n"
    } else {
        ""
    };
    format!(
        "[runtime]\nworker_threads = 2\n[log]\naccess_log = false\n[admin]\nbind = \"127.0.0.1:0\"\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n[[route]]\npool = \"p\"\n{extra}[pool.p]\nbackends = [{{ addr = \"{a}\" }}]\n[pool.q]\nbackends = [{{ addr = \"{b}\" }}]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_a_listener_a_reload_and_a_drain() {
    let a = Backend::start("A").await;
    let b = Backend::start("B").await;
    let s = sluice(&toml(a.addr, b.addr, false)).await;
    let addr = addr(&s, "public").await;
    let admin = s.admin_addr().await.unwrap();
    let mut conns = Vec::new();
    for _ in 0..40 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let r = response(&mut c).await;
        assert!(
            r.starts_with("HTTP/1.1 200") && r.ends_with("\r\n\r\nA"),
            "{r}"
        );
        conns.push(c);
    }
    // The kernel spread the connections over both workers' sockets.
    let per_worker = s.worker_connections();
    assert_eq!(per_worker.len(), 2);
    assert!(per_worker.iter().all(|&n| n > 0), "{per_worker:?}");
    assert_eq!(per_worker.iter().sum::<u64>(), 40, "{per_worker:?}");
    // The gauge adds up across workers.
    let metrics = get(&client(), admin, "x", "/metrics").await.body;
    let active = metrics
        .lines()
        .find(|l| l.starts_with("sluice_connections_active{listener=\"public\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok());
    assert_eq!(active, Some(40.0), "{metrics}");

    // A reload reaches every worker: each open connection sees the new route.
    let config = sluice::config::Config::parse(&toml(a.addr, b.addr, true)).unwrap();
    s.reload(config).await.unwrap();
    for c in conns.iter_mut() {
        c.write_all(b"GET /new HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let r = response(c).await;
        assert!(r.ends_with("\r\n\r\nB"), "{r}");
    }

    // A drain reaches every worker: slow requests on every connection
    // finish, nothing new is accepted, and it all ends in time.
    a.set_delay(Duration::from_millis(400));
    for c in conns.iter_mut() {
        c.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
    }
    eventually(10, || a.requests() >= 40 + 40).await;
    let started = std::time::Instant::now();
    let drain = tokio::spawn(async move {
        let drained = s.shutdown(Duration::from_secs(10)).await;
        (s, drained)
    });
    for c in conns.iter_mut() {
        let r = response(c).await;
        assert!(
            r.starts_with("HTTP/1.1 200") && r.ends_with("\r\n\r\nA"),
            "{r}"
        );
        assert!(
            r.contains("connection: close\r\n"),
            "draining closes after: {r}"
        );
    }
    let (_s, drained) = within(15, drain).await.unwrap();
    assert!(drained, "drained in time");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        within(5, TcpStream::connect(addr)).await.is_err(),
        "still accepting after the drain"
    );
}
