//! Weighted splits (drawn per request) and request mirroring (a copy goes
//! to another pool, fire-and-forget, and never delays, fails or changes
//! the client's answer).

mod support;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use std::time::{Duration, Instant};
use support::*;

/// The bound on copies in flight is the process's: these tests take turns.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn toml(primary: &Backend, shadow: &str, percent: u32, extra: &str) -> String {
    format!(
        r#"
[log]
access_log = false
[admin]
bind = "127.0.0.1:0"
[[listener]]
name = "public"
bind = "127.0.0.1:0"
[[route]]
name = "shop"
pool = "main"
strip_prefix = false
request_headers = {{ set = {{ "x-env" = "prod" }} }}
mirror = {{ pool = "shadow", percent = {percent} }}
[pool.main]
backends = [{{ addr = "{}" }}]
[pool.shadow]
backends = [{{ addr = "{shadow}" }}]
request_timeout = "2s"
{extra}
"#,
        primary.addr
    )
}

async fn mirrored_total(admin: std::net::SocketAddr) -> f64 {
    let text = get(&client(), admin, "x", "/metrics").await.body;
    text.lines()
        .find(|l| l.starts_with("sluice_mirrored_requests_total{route=\"shop\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_with_its_body_reaches_the_mirror_and_is_counted() {
    let _turn = SERIAL.lock().await;
    let main = Backend::start("main").await;
    let shadow = Backend::start("shadow").await;
    let s = sluice(&toml(&main, &shadow.addr.to_string(), 100, "")).await;
    let a = addr(&s, "public").await;
    let admin = s.admin_addr().await.unwrap();
    for c in [client(), h2c_client()] {
        let req = Request::post(format!("http://{a}/echo?n=1"))
            .header("host", "shop.test")
            .header("x-env", "dev")
            .body(Full::new(Bytes::from_static(b"order=42")))
            .unwrap();
        let got = send(&c, req).await;
        assert_eq!((got.status, got.body.as_str()), (200, "order=42"));
    }
    eventually(10, || shadow.requests() == 2).await;
    let mut hosts: Vec<_> = main
        .seen()
        .iter()
        .map(|s| s.headers["host"].clone())
        .collect();
    for seen in shadow.seen() {
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.uri, "/echo?n=1");
        // The head as the primary got it: header rules applied.
        assert_eq!(seen.headers["x-env"], "prod");
        let i = hosts
            .iter()
            .position(|h| *h == seen.headers["host"])
            .unwrap();
        hosts.remove(i);
    }
    assert_eq!(main.requests(), 2);
    assert_eq!(mirrored_total(admin).await, 2.0);
    // A body over 64 KiB is not mirrored; the client is served.
    let big = Request::post(format!("http://{a}/echo"))
        .header("host", "shop.test")
        .body(Full::new(Bytes::from(vec![b'b'; 100 * 1024])))
        .unwrap();
    let got = send(&client(), big).await;
    assert_eq!(got.body.len(), 100 * 1024);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(shadow.requests(), 2);
    assert_eq!(mirrored_total(admin).await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_or_dead_mirror_never_delays_or_fails_the_client() {
    let _turn = SERIAL.lock().await;
    let main = Backend::start("main").await;
    let shadow = Backend::start("shadow").await;
    shadow.set_hang(true);
    let s = sluice(&toml(&main, &shadow.addr.to_string(), 100, "")).await;
    let a = addr(&s, "public").await;
    let c = client();
    let started = Instant::now();
    for _ in 0..300 {
        let got = get(&c, a, "shop.test", "/").await;
        assert_eq!((got.status, got.body.as_str()), (200, "main"));
    }
    // 300 answers while every copy hangs: none waited for its copy.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Copies in flight are bounded (256 in the process): the rest were
    // skipped, not queued.
    eventually(10, || shadow.requests() >= 200).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        shadow.requests() <= 256,
        "{} copies in flight",
        shadow.requests()
    );
    shadow.set_hang(false);
    // The hanging copies end by the mirror pool's request_timeout (2 s).
    let admin_free = Instant::now();
    let probe = Backend::start("probe").await;
    let s3 = sluice(&toml(&main, &probe.addr.to_string(), 100, "")).await;
    let a3 = addr(&s3, "public").await;
    within(10, async {
        while probe.requests() == 0 {
            get(&c, a3, "shop.test", "/").await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(admin_free.elapsed() < Duration::from_secs(5));

    let dead = dead_addr().await;
    let s2 = sluice(&toml(&main, &dead.to_string(), 100, "")).await;
    let a2 = addr(&s2, "public").await;
    for _ in 0..10 {
        let got = get(&c, a2, "shop.test", "/").await;
        assert_eq!((got.status, got.body.as_str()), (200, "main"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percent_copies_that_share_of_requests() {
    let _turn = SERIAL.lock().await;
    let main = Backend::start("main").await;
    let shadow = Backend::start("shadow").await;
    let s = sluice(&toml(&main, &shadow.addr.to_string(), 25, "")).await;
    let a = addr(&s, "public").await;
    let c = client();
    for _ in 0..400 {
        assert_eq!(get(&c, a, "shop.test", "/").await.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let n = shadow.requests();
    // 25% of 400 = 100, sd about 8.7.
    assert!((55..=145).contains(&n), "mirrored {n} of 400");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weighted_split_is_drawn_per_request_and_weight_zero_takes_nothing() {
    let mut b = Vec::new();
    let mut pool_toml = String::new();
    for n in ["v1", "v2", "off"] {
        let x = Backend::start(n).await;
        pool_toml.push_str(&format!(
            "[pool.{n}]\nbackends = [{{ addr = \"{}\" }}]\n",
            x.addr
        ));
        b.push(x);
    }
    let toml = format!(
        r#"
[log]
access_log = false
[[listener]]
name = "public"
bind = "127.0.0.1:0"
[[route]]
name = "split"
path_prefix = "/"
pools = [{{ pool = "v1", weight = 75 }}, {{ pool = "v2", weight = 25 }}, {{ pool = "off", weight = 0 }}]
{pool_toml}"#
    );
    let s = sluice(&toml).await;
    let a = addr(&s, "public").await;
    let c = client();
    let n = 400;
    for _ in 0..n {
        assert_eq!(get(&c, a, "x", "/").await.status, 200);
    }
    let (v1, v2, off) = (b[0].requests(), b[1].requests(), b[2].requests());
    assert_eq!(v1 + v2, n);
    assert_eq!(off, 0, "weight 0 takes nothing");
    // 75% of 400 = 300; a binomial sd is about 8.7: 5 sd either way.
    assert!((256..=344).contains(&v1), "v1 got {v1} of {n}");
    // A split in which nothing may serve is a config error.
    let e = sluice::config::Config::parse(
        &toml
            .replace("weight = 75", "weight = 0")
            .replace("weight = 25", "weight = 0"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("route[0].pools"), "{e}");
}
