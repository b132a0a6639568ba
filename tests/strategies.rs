//! Each balancing strategy, end to end: real backends, real sluice, real
//! HTTP, and the distribution the spec promises.

mod support;
use support::*;

async fn who(c: &TestClient, addr: std::net::SocketAddr, path: &str) -> String {
    let got = get(c, addr, "example.com", path).await;
    assert_eq!(got.status, 200, "{}", got.body);
    got.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_is_smooth_and_weighted() {
    let a = Backend::start("A").await;
    let b = Backend::start("B").await;
    let s = sluice(&config("round_robin", &[(&a, 3), (&b, 1)], "")).await;
    let addr = addr(&s, "public").await;
    let c = client();
    let mut seq = Vec::new();
    for _ in 0..8 {
        seq.push(who(&c, addr, "/").await);
    }
    assert_eq!(seq.join(" "), "A A B A A A B A");

    let x = Backend::start("a").await;
    let y = Backend::start("b").await;
    let z = Backend::start("c").await;
    let s = sluice(&config("round_robin", &[(&x, 5), (&y, 1), (&z, 1)], "")).await;
    let addr = support::addr(&s, "public").await;
    let mut seq = Vec::new();
    for _ in 0..7 {
        seq.push(who(&c, addr, "/").await);
    }
    assert_eq!(seq.join(" "), "a a b a c a a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_avoids_the_busy_backend() {
    let a = Backend::start("A").await;
    let b = Backend::start("B").await;
    let s = sluice(&config("least_connections", &[(&a, 1), (&b, 1)], "")).await;
    let addr = addr(&s, "public").await;
    a.set_hang(true);
    // Park one request on A (the first pick is a coin flip between two idle
    // backends, so send until one lands there).
    #[allow(clippy::async_yields_async)]
    let parked = within(10, async {
        loop {
            let c = client();
            let h = tokio::spawn(async move { get(&c, addr, "x", "/").await });
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
            if a.requests() > 0 {
                break h;
            }
            h.await.unwrap();
        }
    })
    .await;
    let c = client();
    for _ in 0..10 {
        assert_eq!(who(&c, addr, "/").await, "B");
    }
    a.set_hang(false);
    assert_eq!(within(10, parked).await.unwrap().body, "A");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_response_time_shifts_away_from_a_slow_backend() {
    let a = Backend::start("A").await;
    let b = Backend::start("B").await;
    let s = sluice(&config("least_response_time", &[(&a, 1), (&b, 1)], "")).await;
    let addr = addr(&s, "public").await;
    let c = client();
    for _ in 0..10 {
        who(&c, addr, "/").await;
    }
    // Both served while equally fast.
    assert!(
        a.requests() > 0 && b.requests() > 0,
        "A {} B {}",
        a.requests(),
        b.requests()
    );
    a.set_delay(std::time::Duration::from_millis(200));
    let before = a.requests();
    for _ in 0..30 {
        who(&c, addr, "/").await;
    }
    let to_a = a.requests() - before;
    // One slow answer is enough for A's estimate to jump to 200 ms.
    assert!(
        to_a <= 2,
        "the slow backend still got {to_a} of 30 requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_hash_follows_the_client_ip_from_trusted_proxies_only() {
    let backends = [
        Backend::start("A").await,
        Backend::start("B").await,
        Backend::start("C").await,
    ];
    let list: Vec<(&Backend, u32)> = backends.iter().map(|b| (&**b, 1)).collect();
    let trusted = config("ip_hash", &list, "").replace(
        "bind = \"127.0.0.1:0\"",
        "bind = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.1/32\"]",
    );
    let s = sluice(&trusted).await;
    let addr = addr(&s, "public").await;
    let c = client();
    let via = |ip: String| {
        let c = c.clone();
        async move {
            let req = http::Request::get(format!("http://{addr}/"))
                .header("x-forwarded-for", ip)
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            send(&c, req).await.body
        }
    };
    let mut owners = std::collections::HashSet::new();
    for i in 0..30 {
        let ip = format!("203.0.113.{i}");
        let first = via(ip.clone()).await;
        for _ in 0..3 {
            assert_eq!(via(ip.clone()).await, first, "client {ip} moved");
        }
        owners.insert(first);
    }
    assert_eq!(
        owners.len(),
        3,
        "30 clients should spread over all backends"
    );

    // Without trusted_proxies, X-Forwarded-For is not believed: every
    // request comes from 127.0.0.1 and lands on one backend.
    let s = sluice(&config("ip_hash", &list, "")).await;
    let addr = support::addr(&s, "public").await;
    let mut owners = std::collections::HashSet::new();
    for i in 0..20 {
        let req = http::Request::get(format!("http://{addr}/"))
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        owners.insert(send(&c, req).await.body);
    }
    assert_eq!(owners.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_hash_is_consistent_across_instances_and_removals() {
    let backends = [
        Backend::start("A").await,
        Backend::start("B").await,
        Backend::start("C").await,
        Backend::start("D").await,
    ];
    let four: Vec<(&Backend, u32)> = backends.iter().map(|b| (&**b, 1)).collect();
    let three: Vec<(&Backend, u32)> = four
        .iter()
        .filter(|(b, _)| b.name != "C")
        .cloned()
        .collect();
    let s1 = sluice(&config("url_hash", &four, "")).await;
    let s2 = sluice(&config("url_hash", &four, "")).await;
    let s3 = sluice(&config("url_hash", &three, "")).await;
    let (a1, a2, a3) = (
        addr(&s1, "public").await,
        addr(&s2, "public").await,
        addr(&s3, "public").await,
    );
    let c = client();
    let mut moved = 0;
    for k in 0..120 {
        let path = format!("/item/{k}?q={k}");
        let owner = who(&c, a1, &path).await;
        assert_eq!(
            who(&c, a2, &path).await,
            owner,
            "{path}: instances disagree"
        );
        let after = who(&c, a3, &path).await;
        if owner == "C" {
            moved += 1;
            assert_ne!(after, "C");
        } else {
            assert_eq!(after, owner, "{path} lived on {owner} and moved to {after}");
        }
    }
    assert!(
        moved > 10,
        "C should own about a quarter of the keys, owned {moved}"
    );
    // hash_key = "path" (the default) ignores the query.
    assert_eq!(
        who(&c, a1, "/item/7?q=1").await,
        who(&c, a1, "/item/7?q=2").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_follows_weights() {
    let a = Backend::start("A").await;
    let b = Backend::start("B").await;
    let s = sluice(&config("random", &[(&a, 3), (&b, 1)], "")).await;
    let addr = addr(&s, "public").await;
    let c = client();
    for _ in 0..400 {
        who(&c, addr, "/").await;
    }
    let share = a.requests() as f64 / 400.0;
    assert!(
        (0.65..=0.85).contains(&share),
        "A got {share} of traffic, expected 0.75"
    );
}
