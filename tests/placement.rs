//! Placement: slow start measured in traffic shares, bounded-load hashing
//! under skew, and the health check's Host header.

mod support;

use serde_json::Value;
use sluice::config::Config;
use std::sync::Arc;
use std::time::Duration;
use support::*;

/// The weight `/api/v1/pools` shows for `addr`.
async fn shown_weight(admin: std::net::SocketAddr, addr: std::net::SocketAddr) -> u64 {
    let body = get(&client(), admin, "x", "/api/v1/pools").await.body;
    let v: Value = serde_json::from_str(&body).unwrap();
    v["pools"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["addr"] == addr.to_string())
        .and_then(|b| b["weight"].as_u64())
        .unwrap()
}

async fn shares(c: &TestClient, addr: std::net::SocketAddr, n: usize) -> (usize, usize) {
    let mut b = 0;
    for _ in 0..n {
        if get(c, addr, "x", "/").await.body == "b" {
            b += 1;
        }
    }
    (n - b, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_start_ramps_a_new_backend_from_a_tenth_of_its_share() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let file = temp_file("token", "t");
    let port = free_port();
    let text = |backends: &str| {
        format!(
            "[admin]\nbind = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n[log]\naccess_log = false\n\
             [[listener]]\nname = \"public\"\nbind = \"127.0.0.1:{port}\"\n[[route]]\npool = \"p\"\n\
             [pool.p]\nslow_start = \"3s\"\nbackends = [{backends}]\n",
            file.display()
        )
    };
    let one = format!("{{ addr = \"{}\", weight = 10 }}", a.addr);
    let two = format!("{one}, {{ addr = \"{}\", weight = 10 }}", b.addr);
    let s = sluice(&text(&one)).await;
    let admin = s.admin_addr().await.unwrap();
    let public = addr(&s, "public").await;
    // At start every backend has its full weight.
    assert_eq!(shown_weight(admin, a.addr).await, 10);
    let c = client();
    // A reload adds b: it starts near a tenth of its weight...
    s.reload(Config::parse(&text(&two)).unwrap()).await.unwrap();
    let reloaded = std::time::Instant::now();
    let w = shown_weight(admin, b.addr).await;
    let ramp = |t: Duration| 0.1 + 0.9 * (t.as_secs_f64() / 3.0).min(1.0);
    let at_most = ((10.0 * ramp(reloaded.elapsed())).round() as u64).max(1);
    assert!(
        (1..=at_most).contains(&w),
        "ramping weight {w} (at most {at_most})"
    );
    let (_, early) = shares(&c, public, 200).await;
    // ...so its share follows the ramp: at most what the ramp had reached
    // when the last of these requests went (however slowly they went).
    let f = ramp(reloaded.elapsed());
    let bound = (200.0 * f / (1.0 + f) * 1.5 + 10.0) as usize;
    println!(
        "slow start: b took {early} of 200 requests in the {:?} after the reload (bound {bound})",
        reloaded.elapsed()
    );
    assert!(
        early >= 1 && early <= bound,
        "b early: {early} of 200 (bound {bound})"
    );
    assert!(early < 90, "well under half: {early} of 200");
    // After the ramp: its full share.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(shown_weight(admin, b.addr).await, 10);
    let (_, late) = shares(&c, public, 200).await;
    assert!(
        (80..=120).contains(&late),
        "b after the ramp: {late} of 200"
    );
    // Leaving drain ramps it again.
    let path = format!("/api/v1/pools/p/backends/{}", b.addr);
    for state in ["drain", "ready"] {
        let req = http::Request::put(format!("http://{admin}{path}"))
            .header("authorization", "Bearer t")
            .body(http_body_util::Full::new(bytes::Bytes::from(format!(
                "{{\"state\":\"{state}\"}}"
            ))))
            .unwrap();
        assert_eq!(send(&c, req).await.status, 200);
    }
    let w = shown_weight(admin, b.addr).await;
    assert!((1..=3).contains(&w), "ramping again: {w}");
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_loads_spill_a_hot_key_only_when_its_backend_is_overloaded() {
    let backends = [
        Backend::start("x").await,
        Backend::start("y").await,
        Backend::start("z").await,
    ];
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("{{ addr = \"{}\" }}", b.addr))
        .collect();
    let s = sluice(&format!(
        "[log]\naccess_log = false\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n\
         [[route]]\npool = \"p\"\n[pool.p]\nstrategy = \"ip_hash\"\nhash_balance_factor = 1.25\nbackends = [{}]\n",
        list.join(", ")
    ))
    .await;
    let public = addr(&s, "public").await;
    let c = client();
    // Not overloaded: every request of the one client goes to one backend.
    for _ in 0..10 {
        get(&c, public, "x", "/").await;
    }
    let counts = || backends.iter().map(|b| b.requests()).collect::<Vec<_>>();
    let first = counts();
    assert_eq!(first.iter().filter(|&&n| n > 0).count(), 1, "{first:?}");
    assert_eq!(first.iter().sum::<usize>(), 10);
    // Skew: 12 slow requests of the same client at once. Its backend takes
    // at most ceil(1.25 x (in flight + 1) / 3) of them; the rest go on
    // along the ring.
    for b in &backends {
        b.set_delay(Duration::from_millis(400));
    }
    let c = Arc::new(c);
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { get(&c, public, "x", "/").await.status })
        })
        .collect();
    for t in tasks {
        assert_eq!(within(10, t).await.unwrap(), 200);
    }
    let after: Vec<usize> = counts().iter().zip(&first).map(|(n, f)| n - f).collect();
    println!("bounded loads: 12 concurrent requests of one key went {after:?}");
    assert_eq!(after.iter().sum::<usize>(), 12);
    let hot = first.iter().position(|&n| n > 0).unwrap();
    assert!(
        after[hot] <= 7,
        "the hot key's backend is bounded: {after:?}"
    );
    assert!(after[hot] >= 4, "and keeps its share first: {after:?}");
    assert!(
        after.iter().filter(|&&n| n > 0).count() >= 2,
        "the overflow went elsewhere: {after:?}"
    );
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_send_the_configured_host() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let backend = raw_backend(move |mut s| {
        let tx = tx.clone();
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
        }
    })
    .await;
    let s = sluice(&format!(
        "[log]\naccess_log = false\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n\
         [[route]]\npool = \"p\"\n[pool.p]\nbackends = [{{ addr = \"{backend}\" }}]\n\
         [pool.p.health_check]\ninterval = \"50ms\"\nhost = \"health.internal\"\n"
    ))
    .await;
    let head = within(5, rx.recv()).await.unwrap();
    assert!(head.starts_with("GET /healthz HTTP/1.1\r\n"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("\r\nhost: health.internal\r\n"),
        "{head}"
    );
    s.shutdown(Duration::from_secs(1)).await;
}
