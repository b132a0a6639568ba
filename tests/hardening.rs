//! Hostile clients, broken backends, exhausted resources: every limit a
//! client controls, slowloris, thousands of idle connections, a client that
//! never reads, backends that misbehave, and running out of file
//! descriptors. Each ends in the right status or a clean close, and other
//! clients are still served.

mod support;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn one_backend(addr: SocketAddr, listener_extra: &str, pool_extra: &str) -> String {
    format!(
        "[log]\naccess_log = false\n[admin]\nbind = \"127.0.0.1:0\"\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n{listener_extra}\n[[route]]\npool = \"p\"\n[pool.p]\nbackends = [{{ addr = \"{addr}\" }}]\n{pool_extra}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_count_and_target_length_are_limited() {
    let b = Backend::start("b").await;
    let s = sluice(&config("round_robin", &[(&b, 1)], "")).await;
    let a = addr(&s, "public").await;
    let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    let resp = raw(
        a,
        format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&resp), 431, "{resp}");
    // Host, Connection and 98 more: 100 in all, which passes sluice (the
    // test backend's own limit of 100 then refuses the forwarded request
    // with its 4 added headers, with hyper's bodyless 431).
    let ok: String = (0..98).map(|i| format!("X-H{i}: v\r\n")).collect();
    let resp = raw(
        a,
        format!("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n{ok}\r\n").as_bytes(),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp}");
    assert!(
        resp.ends_with("content-length: 0\r\n\r\n") || resp.contains("x-backend"),
        "{resp}"
    );
    let fewer: String = (0..90).map(|i| format!("X-H{i}: v\r\n")).collect();
    let resp = raw(
        a,
        format!("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n{fewer}\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");

    let long = "a".repeat(8 * 1024 + 1);
    let resp = raw(
        a,
        format!("GET /{long} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&resp), 414, "{resp}");
    assert!(resp.contains("request target too long"), "{resp}");
    // Only the 92-field request got past the backend's own parser.
    assert_eq!(b.requests(), 1);
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_client_gets_408_while_others_are_served() {
    let b = Backend::start("b").await;
    let s = sluice(&one_backend(b.addr, "header_read_timeout = \"600ms\"", "")).await;
    let a = addr(&s, "public").await;
    let started = Instant::now();
    let slow = tokio::spawn(async move {
        let mut conn = TcpStream::connect(a).await.unwrap();
        // One byte every 50 ms: the head is never finished in time, though
        // bytes keep coming.
        for b in b"GET / HTTP/1.1\r\nHost: a\r\nX-Padding: "
            .iter()
            .chain([b'x'; 200].iter())
        {
            if conn.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        read_to_close(&mut conn, 10).await
    });
    // Meanwhile, ordinary requests are answered.
    for _ in 0..5 {
        let got = within(2, get(&client(), a, "a", "/")).await;
        assert_eq!(got.status, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resp = within(15, slow).await.unwrap();
    assert_eq!(status_of(&resp), 408, "{resp}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(550) && took < Duration::from_secs(5),
        "{took:?}"
    );
    s.shutdown(Duration::from_secs(1)).await;
}

/// A backend that answers only once it has read a whole Content-Length
/// body, and counts connections that ended before that.
async fn body_reading_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let cut = Arc::new(AtomicUsize::new(0));
    let c = cut.clone();
    let addr = raw_backend(move |mut s| {
        let c = c.clone();
        async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        c.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
                let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if body.len() >= len {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await;
                        got.clear();
                    }
                }
            }
        }
    })
    .await;
    (addr, cut)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_body_gets_408_and_the_backend_connection_is_dropped() {
    let (backend, cut) = body_reading_backend().await;
    let s = sluice(&one_backend(
        backend,
        "idle_timeout = \"500ms\"",
        "request_timeout = \"30s\"",
    ))
    .await;
    let a = addr(&s, "public").await;
    let mut conn = TcpStream::connect(a).await.unwrap();
    conn.write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        .await
        .unwrap();
    let started = Instant::now();
    let resp = within(10, read_to_close(&mut conn, 10)).await;
    assert_eq!(status_of(&resp), 408, "{resp}");
    assert!(resp.contains("the request body stalled"), "{resp}");
    assert!(started.elapsed() >= Duration::from_millis(400));
    eventually(10, || cut.load(Ordering::SeqCst) == 1).await;
    // A complete body is still served.
    let resp = raw(
        a,
        b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_response_is_cut_off_after_idle_timeout() {
    let b = Backend::start("b").await;
    let s = sluice(&one_backend(b.addr, "idle_timeout = \"500ms\"", "")).await;
    let a = addr(&s, "public").await;
    let admin = s.admin_addr().await.unwrap();
    // 1 GiB that is never read: the socket buffers fill, then nothing moves.
    let mut conn = TcpStream::connect(a).await.unwrap();
    conn.write_all(b"GET /bytes/1073741824 HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 64];
    let _ = within(10, conn.read(&mut first)).await;
    assert_eq!(backend_in_flight(admin, b.addr).await, 1.0);
    // The request in flight is abandoned and its backend slot freed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while backend_in_flight(admin, b.addr).await != 0.0 {
        assert!(
            Instant::now() < deadline,
            "the unread response still holds the backend"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get(&client(), a, "a", "/").await.status, 200);
    drop(conn);
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_head_too_large_is_502() {
    let backend = raw_backend(|mut s| async move {
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        let huge = "x".repeat(256 * 1024);
        let _ = s
            .write_all(
                format!("HTTP/1.1 200 OK\r\nX-Huge: {huge}\r\ncontent-length: 2\r\n\r\nok")
                    .as_bytes(),
            )
            .await;
    })
    .await;
    let s = sluice(&one_backend(backend, "", "")).await;
    let a = addr(&s, "public").await;
    let got = get(&client(), a, "a", "/").await;
    assert_eq!(got.status, 502, "{}", got.body);
    assert!(
        got.body.contains("backend sent a broken response"),
        "{}",
        got.body
    );
    s.shutdown(Duration::from_secs(1)).await;
}

/// A backend that answers 413 as soon as it has the head, without reading
/// the body; `linger` says whether it then drains what comes (as nginx
/// does) or closes at once (which resets the upload).
async fn early_answer_backend(linger: bool, conns: Arc<AtomicUsize>) -> SocketAddr {
    raw_backend(move |mut s| {
        conns.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut buf = [0u8; 64 * 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\nconnection: close\r\n\r\ntoo big\n")
                .await;
            if linger {
                let _ = s.shutdown().await;
                let deadline = Instant::now() + Duration::from_secs(5);
                while Instant::now() < deadline {
                    match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => continue,
                        _ => break,
                    }
                }
            }
        }
    })
    .await
}

/// Uploads 4 MiB while reading the answer, as a careful client does.
async fn upload(a: SocketAddr) -> String {
    let mut conn = TcpStream::connect(a).await.unwrap();
    conn.write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 4194304\r\n\r\n")
        .await
        .unwrap();
    let (mut rd, mut wr) = conn.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..64 {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let mut resp = Vec::new();
    let _ = within(15, rd.read_to_end(&mut resp)).await;
    writer.abort();
    String::from_utf8_lossy(&resp).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_answers_before_reading_the_body() {
    // Draining backend: its early answer reaches the client whole.
    let conns = Arc::new(AtomicUsize::new(0));
    let backend = early_answer_backend(true, conns.clone()).await;
    let s = sluice(&one_backend(backend, "", "")).await;
    let a = addr(&s, "public").await;
    let resp = upload(a).await;
    assert_eq!(status_of(&resp), 413, "{resp}");
    assert!(resp.ends_with("too big\n"), "{resp}");
    // Its connection said close: the next request opens a fresh one.
    let before = conns.load(Ordering::SeqCst);
    let resp = raw(a, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status_of(&resp), 413, "{resp}");
    assert_eq!(conns.load(Ordering::SeqCst), before + 1);
    s.shutdown(Duration::from_secs(1)).await;

    // Abrupt backend: the upload is reset under sluice's feet. The client
    // gets the early answer or a 502, never a hang.
    let backend = early_answer_backend(false, Arc::new(AtomicUsize::new(0))).await;
    let s = sluice(&one_backend(backend, "", "")).await;
    let a = addr(&s, "public").await;
    let resp = upload(a).await;
    assert!(matches!(status_of(&resp), 413 | 502), "{resp}");
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_answers_reveal_no_version_and_no_internal_address() {
    let dead = dead_addr().await;
    let s = sluice(&one_backend(dead, "", "")).await;
    let a = addr(&s, "public").await;
    let got = get(&client(), a, "a", "/").await;
    assert_eq!(got.status, 502);
    assert!(!got.headers.contains_key("server"), "{:?}", got.headers);
    assert!(!got.body.contains(&dead.to_string()), "{}", got.body);
    assert!(!got.body.contains(&dead.port().to_string()), "{}", got.body);
    assert!(
        !got.body.contains(env!("CARGO_PKG_VERSION")),
        "{}",
        got.body
    );
    assert!(
        !got.body.to_ascii_lowercase().contains("sluice/"),
        "{}",
        got.body
    );
    let resp = raw(a, b"GET / HTTP/1.1\r\n\r\n").await;
    assert_eq!(status_of(&resp), 400, "{resp}");
    assert!(!resp.to_ascii_lowercase().contains("server:"), "{resp}");
    s.shutdown(Duration::from_secs(1)).await;
}

/// User plus system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// The soft (3) or hard (4) limit on open files of this process.
fn open_files(field: usize) -> Option<String> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(field).map(str::to_string))
        })
}

/// Raises this process's soft limit on open files to its hard limit (as a
/// server's init system would; many shells start at 1024), and returns it.
fn open_files_limit() -> usize {
    if let Some(hard) = open_files(4) {
        let _ = std::process::Command::new("prlimit")
            .args([
                "--pid",
                &std::process::id().to_string(),
                &format!("--nofile={hard}:{hard}"),
            ])
            .status();
    }
    open_files(3).and_then(|v| v.parse().ok()).unwrap_or(1024)
}

/// The binary with a config of one listener in front of `backend`.
fn spawn_binary(
    backend: SocketAddr,
    listener_extra: &str,
    wrap: Option<&str>,
) -> (Child, SocketAddr) {
    let port = free_port();
    let path = temp_file(
        "sluice.toml",
        &format!(
            "[log]\naccess_log = false\nlevel = \"error\"\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:{port}\"\n{listener_extra}\n[[route]]\npool = \"p\"\n[pool.p]\nbackends = [{{ addr = \"{backend}\" }}]\n"
        ),
    );
    let bin = env!("CARGO_BIN_EXE_sluice");
    let child = match wrap {
        None => Child::spawn(&["--config", path.to_str().unwrap()]),
        Some(shell) => {
            let script = format!("{shell}; exec {bin} --config {}", path.display());
            let c = std::process::Command::new("sh")
                .args(["-c", &script])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            Child(c)
        }
    };
    (child, format!("127.0.0.1:{port}").parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections_do_not_starve_a_normal_request() {
    let b = Backend::start("b").await;
    // The test holds one end of each connection, sluice the other.
    let n = 10_000.min(open_files_limit().saturating_sub(200));
    if n < 10_000 {
        println!("open-file limit: {n} idle connections instead of 10,000");
    }
    let (child, a) = spawn_binary(
        b.addr,
        "header_read_timeout = \"120s\"\nidle_timeout = \"120s\"\nmax_connections = 20000",
        None,
    );
    wait_until_serving(a, "/", 20).await;
    let pid = child.0.id();
    let before = rss(pid);
    let mut idle = Vec::with_capacity(n);
    for _ in 0..n {
        idle.push(within(10, TcpStream::connect(a)).await.unwrap());
    }
    // Every connection accepted: a request after them all is served.
    let started = Instant::now();
    let got = within(5, get(&client(), a, "a", "/")).await;
    assert_eq!(got.status, 200);
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let per_conn = rss(pid).saturating_sub(before) / n as u64;
    println!("{n} idle connections: a request took {took:?}; sluice RSS grew {per_conn} bytes per idle connection");
    assert!(per_conn < 16 * 1024, "{per_conn} bytes per idle connection");
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_backs_off_and_recovers() {
    let b = Backend::start("b").await;
    let (child, a) = spawn_binary(b.addr, "", Some("ulimit -n 64"));
    wait_until_serving(a, "/", 20).await;
    let pid = child.0.id();
    // More connections than sluice has descriptors: accept fails (EMFILE)
    // and the extra connections wait in the backlog.
    let mut hogs = Vec::new();
    for _ in 0..100 {
        hogs.push(within(10, TcpStream::connect(a)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu_before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let spent = cpu_ticks(pid) - cpu_before;
    assert!(
        spent < 30,
        "sluice spun: {spent} ticks of CPU in 1 s while out of descriptors"
    );
    drop(hogs);
    // Descriptors free up: sluice serves again, still the same process.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let req = get_with_timeout(a).await;
        if req == Some(200) {
            break;
        }
        assert!(Instant::now() < deadline, "sluice did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
}

async fn get_with_timeout(a: SocketAddr) -> Option<u16> {
    let mut conn = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(a))
        .await
        .ok()?
        .ok()?;
    conn.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let resp = read_to_close(&mut conn, 2).await;
    Some(status_of(&resp))
}
