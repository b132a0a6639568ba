//! Global rate limits through a real redis-server: two sluice instances
//! share one bucket; Redis killed means local limiting with no errors;
//! Redis back means shared buckets again.

mod support;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::*;

/// A redis-server on `port`, without persistence, stopped when dropped.
struct Redis(Child);

impl Redis {
    async fn start(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server) is installed");
        let r = Redis(child);
        wait_port(port, 10).await;
        r
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn config(backend: SocketAddr, redis_port: u16, rps: f64, burst: u32) -> String {
    format!(
        r#"
[log]
access_log = false
[admin]
bind = "127.0.0.1:0"
[redis]
url = "redis://127.0.0.1:{redis_port}/0"
timeout = "200ms"
[[listener]]
name = "public"
bind = "127.0.0.1:0"
[[route]]
name = "api"
pool = "p"
[route.rate_limit]
requests_per_second = {rps}
burst = {burst}
key = "route"
scope = "global"
[pool.p]
backends = [{{ addr = "{backend}" }}]
"#
    )
}

/// Sends requests to both instances in turn for `secs`, as fast as they
/// answer; returns (admitted, refused, other statuses).
async fn hammer(addrs: [SocketAddr; 2], secs: f64) -> (usize, usize, Vec<u16>) {
    let c = client();
    let (mut ok, mut limited, mut other) = (0, 0, Vec::new());
    let end = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
    let mut i = 0;
    while tokio::time::Instant::now() < end {
        match get(&c, addrs[i % 2], "x", "/").await.status {
            200 => ok += 1,
            429 => limited += 1,
            s => other.push(s),
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    (ok, limited, other)
}

async fn redis_errors(admin: SocketAddr) -> f64 {
    let text = get(&client(), admin, "x", "/metrics").await.body;
    text.lines()
        .find(|l| l.starts_with("sluice_redis_errors_total "))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_bucket_and_fall_back_to_local_without_redis() {
    let b = Backend::start("b").await;
    let port = free_port();
    let redis = Redis::start(port).await;
    let (rps, burst) = (40.0, 10);
    let s1 = sluice(&config(b.addr, port, rps, burst)).await;
    let s2 = sluice(&config(b.addr, port, rps, burst)).await;
    let addrs = [addr(&s1, "public").await, addr(&s2, "public").await];
    // The first calls open the connections (decided locally meanwhile).
    within(10, async {
        loop {
            let before = redis_errors(s1.admin_addr().await.unwrap()).await;
            get(&client(), addrs[0], "x", "/").await;
            get(&client(), addrs[1], "x", "/").await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            if redis_errors(s1.admin_addr().await.unwrap()).await == before {
                break;
            }
        }
    })
    .await;
    // Let the shared bucket fill again.
    tokio::time::sleep(Duration::from_secs_f64(f64::from(burst) / rps + 0.1)).await;

    // Shared: both instances together admit rate x time + burst.
    let secs = 3.0;
    let (ok, limited, other) = hammer(addrs, secs).await;
    let expected = rps * secs + f64::from(burst);
    assert!(other.is_empty(), "{other:?}");
    assert!(limited > 0);
    assert!(
        (ok as f64 - expected).abs() <= expected * 0.1,
        "admitted {ok}, expected {expected} (within 10%), refused {limited}"
    );

    // Redis killed: every instance limits locally, clients see no errors.
    drop(redis);
    let (ok, limited, other) = hammer(addrs, secs).await;
    assert!(other.is_empty(), "errors without Redis: {other:?}");
    // Two local buckets: up to twice the rate (plus two bursts).
    assert!(
        ok as f64 > expected * 1.3,
        "admitted {ok} with local buckets"
    );
    assert!(limited > 0);
    assert!(redis_errors(s1.admin_addr().await.unwrap()).await > 0.0);
    assert!(redis_errors(s2.admin_addr().await.unwrap()).await > 0.0);

    // Redis back: shared buckets again, by themselves.
    let _redis = Redis::start(port).await;
    within(15, async {
        loop {
            let before = redis_errors(s1.admin_addr().await.unwrap()).await
                + redis_errors(s2.admin_addr().await.unwrap()).await;
            hammer(addrs, 0.3).await;
            let after = redis_errors(s1.admin_addr().await.unwrap()).await
                + redis_errors(s2.admin_addr().await.unwrap()).await;
            if after == before {
                break;
            }
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs_f64(f64::from(burst) / rps + 0.1)).await;
    let (ok, _, other) = hammer(addrs, secs).await;
    assert!(other.is_empty(), "{other:?}");
    assert!(
        (ok as f64 - expected).abs() <= expected * 0.1,
        "after Redis came back: admitted {ok}, expected {expected}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_never_shows_and_every_key_kind_is_shared() {
    let b = Backend::start("b").await;
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--requirepass",
            "hunter2",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _redis = Redis(child);
    within(10, async {
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let text = |key: &str| {
        config(b.addr, port, 0.01, 2)
            .replace("redis://127.0.0.1", "redis://:hunter2@127.0.0.1")
            .replace("key = \"route\"", &format!("key = \"{key}\""))
    };
    for key in ["client_ip", "header:x-api-key"] {
        let s1 = sluice(&text(key)).await;
        let s2 = sluice(&text(key)).await;
        let addrs = [addr(&s1, "public").await, addr(&s2, "public").await];
        let admin = s1.admin_addr().await.unwrap();
        // Wait for both connections.
        within(10, async {
            loop {
                for a in addrs {
                    get(&client(), a, "x", "/warmup").await;
                }
                let e1 = redis_errors(admin).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                for a in addrs {
                    get(&client(), a, "x", "/warmup").await;
                }
                if redis_errors(admin).await == e1 {
                    break;
                }
            }
        })
        .await;
        // The warm-up spent the shared buckets of this client and of "no
        // header": a fresh key value proves sharing for the header key.
        let c = client();
        let req = |a: SocketAddr, k: &str| {
            http::Request::get(format!("http://{a}/"))
                .header("host", "x")
                .header("x-api-key", k)
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap()
        };
        let statuses = [
            send(&c, req(addrs[0], "fresh")).await.status,
            send(&c, req(addrs[1], "fresh")).await.status,
            send(&c, req(addrs[0], "fresh")).await.status,
            send(&c, req(addrs[1], "fresh")).await.status,
        ];
        match key {
            // Burst 2 across both instances, for the one client IP
            // (spent by the warm-up).
            "client_ip" => assert_eq!(statuses, [429, 429, 429, 429], "{key}"),
            _ => assert_eq!(statuses, [200, 200, 429, 429], "{key}"),
        }
        let shown = get(&client(), admin, "x", "/api/v1/config").await.body;
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redis://:***@127.0.0.1"), "{shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_speaks_tls_to_redis() {
    let b = Backend::start("b").await;
    let dir = support::tls::temp_dir();
    let cert = support::tls::make_cert(&dir, "redis", &["localhost"], false);
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .arg("--tls-cert-file")
        .arg(&cert.cert)
        .arg("--tls-key-file")
        .arg(&cert.key)
        .args(["--tls-auth-clients", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _redis = Redis(child);
    within(10, async {
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // A self-signed test certificate: verification is skipped (#insecure).
    let text = config(b.addr, port, 0.01, 2)
        .replace("redis://127.0.0.1:", "rediss://127.0.0.1:")
        .replace("/0\"", "/#insecure\"")
        .replace("key = \"route\"", "key = \"header:x-api-key\"");
    let s1 = sluice(&text).await;
    let s2 = sluice(&text).await;
    let addrs = [addr(&s1, "public").await, addr(&s2, "public").await];
    let admin = s1.admin_addr().await.unwrap();
    // Wait until both instances are connected (their error counts stop).
    let errors = |a: SocketAddr| async move { redis_errors(a).await };
    let admins = [admin, s2.admin_addr().await.unwrap()];
    within(10, async {
        loop {
            let before = errors(admins[0]).await + errors(admins[1]).await;
            get(&client(), addrs[0], "x", "/").await;
            get(&client(), addrs[1], "x", "/").await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            if errors(admins[0]).await + errors(admins[1]).await == before {
                break;
            }
        }
    })
    .await;
    // A fresh key: burst 2 shared by both instances over TLS.
    let c = client();
    let req = |a: SocketAddr| {
        http::Request::get(format!("http://{a}/"))
            .header("host", "x")
            .header("x-api-key", "tls-key")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap()
    };
    let statuses = [
        send(&c, req(addrs[0])).await.status,
        send(&c, req(addrs[1])).await.status,
        send(&c, req(addrs[0])).await.status,
        send(&c, req(addrs[1])).await.status,
    ];
    assert_eq!(statuses, [200, 200, 429, 429]);
}
