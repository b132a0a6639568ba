//! Hot reload: new backends and routes serve, invalid files change nothing,
//! per-backend state survives, listeners come and go, and 50 reloads under
//! keep-alive load lose no request.

mod support;
use sluice::config::Config;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::*;

fn base(backends: &[&Backend], extra: &str) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("{{ addr = \"{}\" }}", b.addr))
        .collect();
    format!(
        "[log]\naccess_log = false\n[admin]\nbind = \"127.0.0.1:0\"\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n[[route]]\npool = \"p\"\n[pool.p]\nbackends = [{}]\n{extra}\n",
        list.join(", ")
    )
}

/// Reloads, keeping the first listener's actual port (the config says 0).
async fn reload(s: &sluice::Sluice, toml: &str) {
    let port = addr(s, "public").await.port();
    let text = toml.replacen(
        "bind = \"127.0.0.1:0\"\n[[route]]",
        &format!("bind = \"127.0.0.1:{port}\"\n[[route]]"),
        1,
    );
    s.reload(Config::parse(&text).unwrap())
        .await
        .expect("reload");
}

/// Starts sluice with the public listener on a fixed free port, so reloads
/// can name the same bind.
async fn start(toml: &str) -> sluice::Sluice {
    let port = free_port();
    sluice(&toml.replacen(
        "bind = \"127.0.0.1:0\"\n[[route]]",
        &format!("bind = \"127.0.0.1:{port}\"\n[[route]]"),
        1,
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_a_backend_and_a_route_that_then_serve() {
    let (a, b, c) = (
        Backend::start("A").await,
        Backend::start("B").await,
        Backend::start("C").await,
    );
    let s = start(&base(&[&a], "")).await;
    let addr = addr(&s, "public").await;
    let cl = client();
    assert_eq!(get(&cl, addr, "x", "/new").await.body, "A");
    let extra = format!("[[route]]\npath_prefix = \"/new\"\npool = \"q\"\n[pool.q]\nbackends = [{{ addr = \"{}\" }}]\n", c.addr);
    let text = base(&[&a, &b], "").replace("[pool.p]", &format!("{extra}[pool.p]"));
    reload(&s, &text).await;
    assert_eq!(get(&cl, addr, "x", "/new/x").await.body, "C");
    let mut seen = std::collections::HashSet::new();
    for _ in 0..4 {
        seen.insert(get(&cl, addr, "x", "/").await.body);
    }
    assert_eq!(seen.len(), 2, "A and B both serve: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_changes_nothing_and_is_counted() {
    let a = Backend::start("A").await;
    let s = start(&base(&[&a], "")).await;
    let addr = addr(&s, "public").await;
    let bad = temp_file(
        "bad.toml",
        "[[listener]]\nname = \"public\"\nbind = \"nope\"\n",
    );
    let err = s.reload_from(&bad).await.unwrap_err().to_string();
    assert!(
        err.contains("listener[0].bind: invalid socket address \"nope\""),
        "{err}"
    );
    assert_eq!(get(&client(), addr, "x", "/").await.body, "A");
    let admin = s.admin_addr().await.unwrap();
    let metrics = get(&client(), admin, "x", "/metrics").await.body;
    assert!(
        metrics.contains("sluice_config_reloads_total{result=\"failure\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_config_reloads_total{result=\"success\"} 0"),
        "{metrics}"
    );

    // A bind that fails fails the whole reload: the backend added with it
    // does not appear either.
    let b = Backend::start("B").await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = addr.port();
    let text = base(&[&a, &b], "").replacen(
        "bind = \"127.0.0.1:0\"\n[[route]]",
        &format!(
            "bind = \"127.0.0.1:{port}\"\n[[listener]]\nname = \"extra\"\nbind = \"{}\"\n[[route]]",
            taken.local_addr().unwrap()
        ),
        1,
    );
    assert!(s.reload(Config::parse(&text).unwrap()).await.is_err());
    for _ in 0..4 {
        assert_eq!(get(&client(), addr, "x", "/").await.body, "A");
    }
    let metrics = get(&client(), admin, "x", "/metrics").await.body;
    assert!(
        metrics.contains("sluice_config_reloads_total{result=\"failure\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_backend_stays_down_across_a_reload_that_keeps_it() {
    let a = Backend::start("A").await;
    let b = Backend::start("B").await;
    b.set_health_status(503);
    // The first failed check takes B down at once; the next check is an
    // hour away, so only kept state can keep it down after the reload.
    let checks = "[pool.p.health_check]\ninterval = \"1h\"\n";
    let s = start(&base(&[&a, &b], checks)).await;
    let addr = addr(&s, "public").await;
    eventually(5, || b.checks() == 1).await;
    let cl = client();
    within(5, async {
        while get(&cl, addr, "x", "/").await.body != "A" {}
    })
    .await;
    let before = b.requests();
    reload(
        &s,
        &base(&[&a, &b], checks).replace("[log]", "[runtime]\nshutdown_grace = \"5s\"\n[log]"),
    )
    .await;
    for _ in 0..10 {
        assert_eq!(get(&cl, addr, "x", "/").await.body, "A");
    }
    assert_eq!(b.requests(), before, "B got traffic after the reload");
    assert_eq!(b.checks(), 1, "the reload did not restart B's checks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_are_added_and_removed() {
    let a = Backend::start("A").await;
    let s = start(&base(&[&a], "")).await;
    let first = addr(&s, "public").await;
    let p2 = free_port();
    let two = base(&[&a], "").replacen(
        "bind = \"127.0.0.1:0\"\n[[route]]",
        &format!(
            "bind = \"{first}\"\n[[listener]]\nname = \"second\"\nbind = \"127.0.0.1:{p2}\"\n[[route]]"
        ),
        1,
    );
    s.reload(Config::parse(&two).unwrap()).await.unwrap();
    let second = addr(&s, "second").await;
    assert_eq!(second.port(), p2);
    assert_eq!(get(&client(), second, "x", "/").await.body, "A");
    assert_eq!(get(&client(), first, "x", "/").await.body, "A");
    // Now only "second": the first port stops accepting.
    let only_second = format!(
        "[log]\naccess_log = false\n[[listener]]\nname = \"second\"\nbind = \"127.0.0.1:{p2}\"\n[[route]]\npool = \"p\"\n[pool.p]\nbackends = [{{ addr = \"{}\" }}]\n",
        a.addr
    );
    s.reload(Config::parse(&only_second).unwrap())
        .await
        .unwrap();
    eventually(5, || std::net::TcpStream::connect(first).is_err()).await;
    assert_eq!(get(&client(), second, "x", "/").await.body, "A");
    assert!(s.listener_addr("public").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_reloads_under_keep_alive_load_lose_nothing() {
    let a = Backend::start("A").await;
    let b = Backend::start("B").await;
    let s = Arc::new(start(&base(&[&a], "")).await);
    let addr = addr(&s, "public").await;
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            // One keep-alive connection per worker, reused throughout.
            let cl = client();
            while !stop.load(Ordering::SeqCst) {
                let req = http::Request::get(format!("http://{addr}/"))
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap();
                match tokio::time::timeout(Duration::from_secs(5), cl.request(req)).await {
                    Ok(Ok(resp)) if resp.status() == 200 => {
                        let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }));
    }
    let one = base(&[&a], "");
    let two = base(&[&a, &b], "[pool.p.retry]\nattempts = 1\n").replace(
        "[[route]]\npool = \"p\"",
        "[[route]]\npool = \"p\"\nname = \"renamed\"",
    );
    for i in 0..50 {
        reload(&s, if i % 2 == 0 { &two } else { &one }).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        within(10, w).await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    assert_eq!(
        failed, 0,
        "{failed} requests failed across 50 reloads ({ok} succeeded)"
    );
    assert!(ok > 200, "the load was too light to mean anything: {ok}");
    assert!(b.requests() > 0, "the reloaded-in backend served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkers_follow_reloads_removed_stop_added_start() {
    let a = Backend::start("A").await;
    let b = Backend::start("B").await;
    let checks = "[pool.p.health_check]\ninterval = \"20ms\"\n";
    let s = start(&base(&[&a, &b], checks)).await;
    eventually(5, || b.checks() >= 3 && a.checks() >= 3).await;
    reload(&s, &base(&[&a], checks)).await;
    // At most one check of B was already under way.
    let after = b.checks();
    let a_after = a.checks();
    eventually(5, || a.checks() >= a_after + 5).await;
    assert!(
        b.checks() <= after + 1,
        "B still checked: {after} -> {}",
        b.checks()
    );
    // And a backend a reload adds is checked from then on.
    let c = Backend::start("C").await;
    reload(&s, &base(&[&a, &c], checks)).await;
    eventually(5, || c.checks() >= 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_renamed_in_place_keeps_its_socket_and_serves_under_its_new_name() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = Backend::start("A").await;
    let s = start(&base(&[&a], "")).await;
    let addr = addr(&s, "public").await;
    // A keep-alive connection open across the rename.
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = within(10, conn.read(&mut buf)).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let renamed = base(&[&a], "").replace("name = \"public\"", "name = \"front\"");
    let text = renamed.replacen(
        "bind = \"127.0.0.1:0\"\n[[route]]",
        &format!("bind = \"127.0.0.1:{}\"\n[[route]]", addr.port()),
        1,
    );
    s.reload(Config::parse(&text).unwrap())
        .await
        .expect("reload");
    // Same socket, new name: new connections count under it.
    assert_eq!(s.listener_addr("front").await, Some(addr));
    assert_eq!(s.listener_addr("public").await, None);
    assert_eq!(get(&client(), addr, "x", "/").await.body, "A");
    let admin = s.admin_addr().await.unwrap();
    let metrics = get(&client(), admin, "x", "/metrics").await.body;
    assert!(
        metrics.contains("sluice_requests_total{code=\"200\",listener=\"front\",route=\"p\"} 1"),
        "{metrics}"
    );
    // The connection open across the rename still works.
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let n = within(10, conn.read(&mut buf)).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_changes_on_reload() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = Backend::start("a").await;
    let one = base(&[&a], "").replace(
        "bind = \"127.0.0.1:0\"\n[[route]]",
        "bind = \"127.0.0.1:0\"\nmax_connections = 1\n[[route]]",
    );
    let s = start(&one).await;
    let public = addr(&s, "public").await;
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    // The only place, held by an open keep-alive connection.
    let mut first = tokio::net::TcpStream::connect(public).await.unwrap();
    first.write_all(request).await.unwrap();
    let mut buf = [0u8; 1024];
    assert!(within(5, first.read(&mut buf)).await.unwrap() > 0);
    // A second connection waits unanswered...
    let mut second = tokio::net::TcpStream::connect(public).await.unwrap();
    second.write_all(request).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(300), second.read(&mut buf)).await;
    assert!(waited.is_err(), "answered over max_connections");
    // ...until a reload makes room for it.
    reload(
        &s,
        &one.replace("max_connections = 1", "max_connections = 2"),
    )
    .await;
    let n = within(5, second.read(&mut buf)).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "served once the limit grew"
    );
    // Back to 1: open connections stay; a third waits until two close.
    reload(&s, &one).await;
    let mut third = tokio::net::TcpStream::connect(public).await.unwrap();
    third.write_all(request).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(300), third.read(&mut buf)).await;
    assert!(waited.is_err(), "answered over the lowered max_connections");
    drop(first);
    let waited = tokio::time::timeout(Duration::from_millis(300), third.read(&mut buf)).await;
    assert!(waited.is_err(), "one closed is not enough: two were open");
    drop(second);
    let n = within(5, third.read(&mut buf)).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}
