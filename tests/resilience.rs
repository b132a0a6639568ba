//! Pools surviving their backends: health checks, circuit breakers, rate
//! limits, retries and their budget, bulkheads. Backends are switched to
//! fail, hang or refuse at run time.

mod support;
use bytes::Bytes;
use http_body_util::Full;
use std::time::Duration;
use support::*;

async fn who(c: &TestClient, addr: std::net::SocketAddr) -> Got {
    get(c, addr, "example.com", "/").await
}

const CHECKS: &str = "[pool.p.health_check]\npath = \"/healthz\"\ninterval = \"50ms\"\ntimeout = \"1s\"\nhealthy_threshold = 2\nunhealthy_threshold = 3\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_checks_take_a_backend_out_and_passing_ones_bring_it_back() {
    let a = Backend::start("A").await;
    let b = Backend::start("B").await;
    let s = sluice(&config("round_robin", &[(&a, 1), (&b, 1)], CHECKS)).await;
    let addr = addr(&s, "public").await;
    let c = client();
    eventually(5, || a.checks() >= 2 && b.checks() >= 2).await;

    b.set_health_status(503);
    let from = b.checks();
    // Down after unhealthy_threshold (3) failed checks: then only A serves.
    eventually(5, || b.checks() >= from + 3).await;
    within(5, async {
        loop {
            let before = b.requests();
            let all_a = {
                let mut ok = true;
                for _ in 0..6 {
                    ok &= who(&c, addr).await.body == "A";
                }
                ok
            };
            if all_a && b.requests() == before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        b.checks() - from >= 3,
        "taken out after {} failed checks",
        b.checks() - from
    );

    // Back after healthy_threshold (2) passing checks.
    b.set_health_status(200);
    let from = b.checks();
    within(5, async {
        while who(&c, addr).await.body != "B" {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        b.checks() - from >= 2,
        "back after {} passing checks",
        b.checks() - from
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_with_every_backend_down_is_503_with_retry_after() {
    let a = Backend::start("A").await;
    a.set_health_status(500);
    let s = sluice(&config("round_robin", &[(&a, 1)], CHECKS)).await;
    let addr = addr(&s, "public").await;
    // The very first failed check takes a new backend down at once.
    eventually(5, || a.checks() >= 1).await;
    let c = client();
    let got = within(5, async {
        loop {
            let got = who(&c, addr).await;
            if got.status == 503 {
                break got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(got.header("retry-after"), "1");
    assert!(got.body.contains("no backend available"), "{}", got.body);
    assert_eq!(a.requests(), 0, "a down backend gets no traffic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_fails_fast_goes_half_open_and_closes() {
    let a = Backend::start("A").await;
    a.set_status(500);
    let breaker = "[pool.p.circuit_breaker]\nfailure_threshold = 3\nopen_duration = \"400ms\"\nhalf_open_requests = 1\n";
    let s = sluice(&config("round_robin", &[(&a, 1)], breaker)).await;
    let addr = addr(&s, "public").await;
    let c = client();
    for _ in 0..3 {
        assert_eq!(
            who(&c, addr).await.status,
            500,
            "5xx passed through while closed"
        );
    }
    // Open: fail fast, nothing reaches the backend.
    for _ in 0..5 {
        let got = who(&c, addr).await;
        assert_eq!(got.status, 503);
        assert!(got.header("retry-after").parse::<u32>().unwrap() >= 1);
    }
    assert_eq!(a.requests(), 3);
    // Half-open after open_duration: one trial, which fails and reopens.
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(who(&c, addr).await.status, 500);
    assert_eq!(a.requests(), 4);
    assert_eq!(who(&c, addr).await.status, 503, "a failed trial reopens");
    assert_eq!(a.requests(), 4);
    // Next trial succeeds and closes the breaker.
    a.set_status(200);
    tokio::time::sleep(Duration::from_millis(450)).await;
    for _ in 0..5 {
        assert_eq!(who(&c, addr).await.status, 200);
    }
    assert_eq!(a.requests(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_rate_limit_caps_exactly_what_a_backend_receives() {
    let a = Backend::start("A").await;
    let b = Backend::start("B").await;
    // 0.01/s: no token comes back during the test.
    let limit = "[pool.p.rate_limit]\nrequests_per_second = 0.01\nburst = 4\n";
    let s = sluice(&config("round_robin", &[(&a, 1), (&b, 1)], limit)).await;
    let addr = addr(&s, "public").await;
    let c = client();
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let got = who(&c, addr).await;
        if got.status == 503 {
            assert!(!got.header("retry-after").is_empty());
        }
        statuses.push(got.status);
    }
    assert_eq!(
        (a.requests(), b.requests()),
        (4, 4),
        "each backend gets exactly its burst"
    );
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 8);
    assert_eq!(statuses.iter().filter(|&&s| s == 503).count(), 12);
    // A full backend is skipped, not failed: the first 8 all succeeded.
    assert!(statuses[..8].iter().all(|&s| s == 200), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_rate_limit_is_429_per_client_ip() {
    let a = Backend::start("A").await;
    let toml = config("round_robin", &[(&a, 1)], "")
        .replace(
            "bind = \"127.0.0.1:0\"",
            "bind = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.1\"]",
        )
        .replace(
            "pool = \"p\"\n",
            "pool = \"p\"\n[route.rate_limit]\nrequests_per_second = 0.01\nburst = 3\n",
        );
    let s = sluice(&toml).await;
    let addr = addr(&s, "public").await;
    let c = client();
    let from = |ip: &str| {
        http::Request::get(format!("http://{addr}/"))
            .header("x-forwarded-for", ip)
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    for _ in 0..3 {
        assert_eq!(send(&c, from("203.0.113.1")).await.status, 200);
    }
    let limited = send(&c, from("203.0.113.1")).await;
    assert_eq!(limited.status, 429);
    let after: u64 = limited.header("retry-after").parse().unwrap();
    assert!(after >= 1, "{after}");
    assert!(limited.body.contains("rate limit"), "{}", limited.body);
    // Another client has its own bucket.
    assert_eq!(send(&c, from("203.0.113.2")).await.status, 200);
    assert_eq!(a.requests(), 4);
}

const RETRY: &str = "[pool.p.retry]\nattempts = 2\nbackoff = \"1ms\"\nbackoff_max = \"5ms\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gets_are_retried_past_a_backend_that_refuses_connections() {
    let dead = dead_addr().await;
    let b = Backend::start("B").await;
    let toml = format!(
        "[log]\naccess_log = false\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n[[route]]\npool = \"p\"\n[pool.p]\nbackends = [{{ addr = \"{dead}\" }}, {{ addr = \"{}\" }}]\n{RETRY}",
        b.addr
    );
    let s = sluice(&toml).await;
    let addr = addr(&s, "public").await;
    let c = client();
    for _ in 0..20 {
        let got = who(&c, addr).await;
        assert_eq!(got.status, 200, "{}", got.body);
        assert_eq!(got.body, "B");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_are_replayed_only_with_an_idempotency_key() {
    let a = Backend::start("A").await;
    let b = Backend::start("B").await;
    a.set_status(503);
    let s = sluice(&config("round_robin", &[(&a, 1), (&b, 1)], RETRY)).await;
    let addr = addr(&s, "public").await;
    let c = client();
    let post = |key: Option<&str>| {
        let mut r = http::Request::post(format!("http://{addr}/")).header("host", "x");
        if let Some(k) = key {
            r = r.header("idempotency-key", k);
        }
        r.body(Full::new(Bytes::from_static(b"order=1"))).unwrap()
    };
    // Without a key: a POST that reached A is answered with A's 503.
    let (a0, b0) = (a.requests(), b.requests());
    let mut failed = 0;
    for _ in 0..10 {
        if send(&c, post(None)).await.status == 503 {
            failed += 1;
        }
    }
    assert_eq!(
        failed,
        a.requests() - a0,
        "every POST that reached A failed, none was replayed"
    );
    assert_eq!(b.requests() - b0, 10 - failed);
    assert!(failed > 0);
    // With a key: replayed onto B, the body intact.
    let a1 = a.requests();
    for i in 0..10 {
        let got = send(&c, post(Some(&format!("k{i}")))).await;
        assert_eq!(got.status, 200, "{}", got.body);
    }
    assert!(
        a.requests() > a1,
        "some keyed POSTs went to A first and were replayed"
    );
    let replayed = b.last();
    assert_eq!(replayed.method, "POST");
    assert_eq!(replayed.headers["content-length"], "7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_caps_retries_when_every_backend_fails() {
    let a = Backend::start("A").await;
    let b = Backend::start("B").await;
    a.set_status(502);
    b.set_status(502);
    let retry = "[pool.p.retry]\nattempts = 2\nbackoff = \"1ms\"\nbackoff_max = \"1ms\"\nbudget_ratio = 0.2\n";
    let s = sluice(&config("round_robin", &[(&a, 1), (&b, 1)], retry)).await;
    let addr = addr(&s, "public").await;
    let c = client();
    let n = 600;
    within(60, async {
        for _ in 0..n {
            assert_eq!(who(&c, addr).await.status, 502);
        }
    })
    .await;
    let retries = a.requests() + b.requests() - n;
    // 20% of 600 plus the floor of 10/s over the 10 s window; without a
    // budget it would be 1,200.
    assert!(retries <= 120 + 100, "{retries} retries");
    assert!(
        retries >= 100,
        "the floor lets light traffic retry: {retries}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_at_max_in_flight_is_skipped() {
    let a = Backend::start("A").await;
    let b = Backend::start("B").await;
    a.set_hang(true);
    let s = sluice(&config(
        "round_robin",
        &[(&a, 1), (&b, 1)],
        "max_in_flight = 1",
    ))
    .await;
    let addr = addr(&s, "public").await;
    // Park a request on A (round robin starts with A).
    let c = client();
    let c2 = c.clone();
    let parked = tokio::spawn(async move { who(&c2, addr).await });
    eventually(5, || a.requests() == 1).await;
    for _ in 0..6 {
        assert_eq!(who(&c, addr).await.body, "B");
    }
    assert_eq!(a.requests(), 1);
    a.set_hang(false);
    assert_eq!(within(5, parked).await.unwrap().body, "A");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_check_never_delays_another_backends_checks() {
    let a = Backend::start("A").await;
    let b = Backend::start("B").await;
    a.set_health_hang(true);
    b.set_health_status(503);
    let checks =
        "[pool.p.health_check]\ninterval = \"50ms\"\ntimeout = \"30s\"\nunhealthy_threshold = 3\n";
    let s = sluice(&config("round_robin", &[(&a, 1), (&b, 1)], checks)).await;
    let addr = addr(&s, "public").await;
    // A's first check hangs for its whole 30 s timeout; B is checked on
    // schedule all the same and taken out.
    eventually(5, || b.checks() >= 4).await;
    assert_eq!(a.checks(), 1, "A's check is still hanging");
    let c = client();
    for _ in 0..4 {
        assert_eq!(who(&c, addr).await.body, "A");
    }
    a.set_health_hang(false);
}
