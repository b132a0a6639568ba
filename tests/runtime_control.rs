//! Runtime control through the admin API: PUT a backend's state and weight
//! (token, drain, maint, weight, surviving a reload), and explain.

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::Value;
use sluice::config::Config;
use std::net::SocketAddr;
use std::time::Duration;
use support::*;

async fn put(admin: SocketAddr, path: &str, token: Option<&str>, body: &str) -> Got {
    let mut req = Request::put(format!("http://{admin}{path}")).header("host", "admin");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    send(
        &client(),
        req.body(Full::new(Bytes::from(body.to_string()))).unwrap(),
    )
    .await
}

async fn json(admin: SocketAddr, path: &str) -> Value {
    let got = get(&client(), admin, "admin", path).await;
    assert_eq!(got.status, 200, "{path}: {}", got.body);
    serde_json::from_str(&got.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", got.body))
}

/// The metric line value of `name` for backend `addr`.
fn metric(text: &str, name: &str, addr: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l.contains(&format!("backend=\"{addr}\"")))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn with_admin(base: &str, token_file: Option<&std::path::Path>) -> String {
    let token = token_file.map_or(String::new(), |f| {
        format!("token_file = \"{}\"\n", f.display())
    });
    format!("[admin]\nbind = \"127.0.0.1:0\"\n{token}{base}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_the_token_and_check_what_they_are_given() {
    let a = Backend::start("a").await;
    // No token file: writes are refused outright.
    let s = sluice(&with_admin(&config("round_robin", &[(&a, 1)], ""), None)).await;
    let admin = s.admin_addr().await.unwrap();
    let path = format!("/api/v1/pools/p/backends/{}", a.addr);
    assert_eq!(
        put(admin, &path, Some("x"), r#"{"state":"drain"}"#)
            .await
            .status,
        403
    );
    s.shutdown(Duration::from_secs(1)).await;

    let file = temp_file("token", "  s3cret-token\n");
    let s = sluice(&with_admin(
        &config("round_robin", &[(&a, 1)], ""),
        Some(&file),
    ))
    .await;
    let admin = s.admin_addr().await.unwrap();
    let body = r#"{"state":"drain"}"#;
    let missing = put(admin, &path, None, body).await;
    assert_eq!(missing.status, 401);
    assert!(missing.header("www-authenticate").starts_with("Bearer"));
    assert_eq!(
        put(admin, &path, Some("s3cret-tokeN"), body).await.status,
        401
    );
    assert_eq!(put(admin, &path, Some("s3cret"), body).await.status, 401);
    // Nothing changed by the refused writes.
    let pools = json(admin, "/api/v1/pools").await;
    assert_eq!(pools["pools"][0]["backends"][0]["admin_state"], "ready");
    // Unknown pool or backend: 404; a bad body: 400, and nothing changes.
    let t = Some("s3cret-token");
    assert_eq!(
        put(admin, "/api/v1/pools/nope/backends/1.2.3.4:5", t, body)
            .await
            .status,
        404
    );
    assert_eq!(
        put(admin, "/api/v1/pools/p/backends/1.2.3.4:5", t, body)
            .await
            .status,
        404
    );
    for bad in [r#"{"state":"down"}"#, r#"{"weight":300}"#, "{}", "drain"] {
        assert_eq!(put(admin, &path, t, bad).await.status, 400, "{bad}");
    }
    assert_eq!(
        json(admin, "/api/v1/pools").await["pools"][0]["backends"][0]["admin_state"],
        "ready"
    );
    // The right token: 200 with the backend's new JSON.
    let ok = put(admin, &path, t, body).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let v: Value = serde_json::from_str(&ok.body).unwrap();
    assert_eq!(v["admin_state"], "drain");
    assert_eq!(v["addr"], a.addr.to_string());
    // The token never shows in the config API.
    let cfg = get(&client(), admin, "admin", "/api/v1/config").await.body;
    assert!(!cfg.contains("s3cret"), "{cfg}");
    // An empty token file is a config error naming the key.
    let empty = temp_file("token", "\n");
    let err = sluice::load_config_text(&with_admin(
        &config("round_robin", &[(&a, 1)], ""),
        Some(&empty),
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("admin.token_file"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_lets_in_flight_finish_while_new_requests_go_elsewhere_and_outlives_a_reload() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let file = temp_file("token", "t");
    let text = with_admin(&config("round_robin", &[(&a, 1), (&b, 1)], ""), Some(&file));
    let s = sluice(&text).await;
    let (public, admin) = (addr(&s, "public").await, s.admin_addr().await.unwrap());
    let c = client();
    // Round robin starts at a: the first request is a slow one on a.
    a.set_delay(Duration::from_millis(700));
    let slow = {
        let c = c.clone();
        tokio::spawn(async move { get(&c, public, "x", "/slow").await })
    };
    eventually(5, || a.requests() == 1).await;
    let path = format!("/api/v1/pools/p/backends/{}", a.addr);
    assert_eq!(
        put(admin, &path, Some("t"), r#"{"state":"drain"}"#)
            .await
            .status,
        200
    );
    for _ in 0..10 {
        assert_eq!(get(&c, public, "x", "/").await.body, "b");
    }
    // The in-flight request on the drained backend finished normally.
    let done = within(5, slow).await.unwrap();
    assert_eq!((done.status, done.body.as_str()), (200, "a"));
    assert_eq!(a.requests(), 1);
    let m = get(&c, admin, "admin", "/metrics").await.body;
    assert_eq!(
        metric(&m, "sluice_backend_admin_state", &a.addr.to_string()),
        Some(1.0)
    );
    // A reload that keeps the backend keeps its state.
    s.reload(Config::parse(&text).unwrap()).await.unwrap();
    for _ in 0..4 {
        assert_eq!(get(&c, public, "x", "/").await.body, "b");
    }
    // maint: no requests and no health checks; ready undoes it.
    assert_eq!(
        put(admin, &path, Some("t"), r#"{"state":"ready"}"#)
            .await
            .status,
        200
    );
    let bodies: Vec<String> = futures_bodies(&c, public, 4).await;
    assert!(bodies.iter().any(|b| b == "a"), "{bodies:?}");
    s.shutdown(Duration::from_secs(1)).await;
}

async fn futures_bodies(c: &TestClient, addr: SocketAddr, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(get(c, addr, "x", "/").await.body);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maint_stops_health_checks_and_weights_change_the_shares() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let file = temp_file("token", "t");
    let checks = "[pool.p.health_check]\npath = \"/healthz\"\ninterval = \"50ms\"\n";
    let s = sluice(&with_admin(
        &config("round_robin", &[(&a, 1), (&b, 1)], checks),
        Some(&file),
    ))
    .await;
    let (public, admin) = (addr(&s, "public").await, s.admin_addr().await.unwrap());
    let c = client();
    let path = format!("/api/v1/pools/p/backends/{}", a.addr);
    eventually(5, || a.checks() >= 2).await;
    assert_eq!(
        put(admin, &path, Some("t"), r#"{"state":"maint"}"#)
            .await
            .status,
        200
    );
    // At most one check already under way may still land.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let frozen = a.checks();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        a.checks(),
        frozen,
        "a backend in maintenance is not checked"
    );
    assert!(b.checks() > 4, "the other backend still is");
    assert!(futures_bodies(&c, public, 6).await.iter().all(|x| x == "b"));
    assert_eq!(
        put(admin, &path, Some("t"), r#"{"state":"ready"}"#)
            .await
            .status,
        200
    );
    eventually(5, || a.checks() > frozen).await;

    // Weight 3 against 1: three of every four requests, from the next one.
    let v: Value =
        serde_json::from_str(&put(admin, &path, Some("t"), r#"{"weight":3}"#).await.body).unwrap();
    assert_eq!(
        (v["weight"].as_u64(), v["config_weight"].as_u64()),
        (Some(3), Some(1))
    );
    let bodies = futures_bodies(&c, public, 40).await;
    assert_eq!(
        bodies.iter().filter(|x| *x == "a").count(),
        30,
        "{bodies:?}"
    );
    let m = get(&c, admin, "admin", "/metrics").await.body;
    assert_eq!(
        metric(&m, "sluice_backend_weight", &a.addr.to_string()),
        Some(3.0)
    );
    // Weight 0 takes nothing; null returns to the file's weight.
    put(admin, &path, Some("t"), r#"{"weight":0}"#).await;
    assert!(futures_bodies(&c, public, 8).await.iter().all(|x| x == "b"));
    let v: Value = serde_json::from_str(
        &put(admin, &path, Some("t"), r#"{"weight":null}"#)
            .await
            .body,
    )
    .unwrap();
    assert_eq!(v["weight"].as_u64(), Some(1));
    let bodies = futures_bodies(&c, public, 8).await;
    assert_eq!(bodies.iter().filter(|x| *x == "a").count(), 4, "{bodies:?}");
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_gives_every_reason_and_the_backend_a_request_would_get() {
    let [a, b, c, d] = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
        Backend::start("d").await,
    ];
    let sick = Backend::start("sick").await;
    sick.set_health_status(500);
    let failing = Backend::start("failing").await;
    failing.set_status(500);
    let limited = Backend::start("limited").await;
    let busy = Backend::start("busy").await;
    let file = temp_file("token", "t");
    let text = format!(
        "[admin]\nbind = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n[log]\naccess_log = false\n\
         [[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.0/8\"]\n\
         [[route]]\nname = \"home\"\nhost = \"home.test\"\npool = \"p\"\n\
         [[route]]\nname = \"sick\"\npath_prefix = \"/sick\"\npool = \"sick\"\n\
         [[route]]\nname = \"brk\"\npath_prefix = \"/brk\"\npool = \"brk\"\n\
         [[route]]\nname = \"rl\"\npath_prefix = \"/rl\"\npool = \"rl\"\n\
         [[route]]\nname = \"busy\"\npath_prefix = \"/busy\"\npool = \"busy\"\n\
         [[route]]\nname = \"old\"\npath_prefix = \"/old\"\nredirect = {{ path = \"/new\", code = 301 }}\n\
         [pool.p]\nstrategy = \"ip_hash\"\nbackends = [{{ addr = \"{}\" }}, {{ addr = \"{}\" }}, {{ addr = \"{}\" }}, {{ addr = \"{}\" }}]\n\
         [pool.sick]\nbackends = [{{ addr = \"{}\" }}]\n[pool.sick.health_check]\npath = \"/healthz\"\ninterval = \"50ms\"\nunhealthy_threshold = 1\n\
         [pool.brk]\nbackends = [{{ addr = \"{}\" }}]\n[pool.brk.circuit_breaker]\nfailure_threshold = 1\nopen_duration = \"1m\"\n\
         [pool.rl]\nbackends = [{{ addr = \"{}\" }}]\n[pool.rl.rate_limit]\nrequests_per_second = 0.01\nburst = 1\n\
         [pool.busy]\nmax_in_flight = 1\nbackends = [{{ addr = \"{}\" }}]\n",
        file.display(),
        a.addr, b.addr, c.addr, d.addr, sick.addr, failing.addr, limited.addr, busy.addr
    );
    let s = sluice(&text).await;
    let (public, admin) = (addr(&s, "public").await, s.admin_addr().await.unwrap());
    let cl = client();
    let reasons = |v: &Value, pool: usize, backend: usize| -> Vec<String> {
        v["pools"][pool]["backends"][backend]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_string())
            .collect()
    };

    // would_pick agrees with where requests from that client really go.
    for client_ip in ["10.1.2.3", "10.9.8.7", "192.168.0.1"] {
        let v = json(
            admin,
            &format!("/api/v1/explain?host=home.test&path=/x&client={client_ip}"),
        )
        .await;
        assert_eq!(v["route"], "home");
        assert_eq!(v["pools"][0]["strategy"], "ip_hash");
        let pick = v["pools"][0]["would_pick"].as_str().unwrap().to_string();
        let req = Request::get(format!("http://{public}/x"))
            .header("host", "home.test")
            .header("x-forwarded-for", client_ip)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let served = send(&cl, req).await.body;
        let all = [&a, &b, &c, &d];
        let want = all.iter().find(|x| x.addr.to_string() == pick).unwrap();
        assert_eq!(served, want.name, "{client_ip}");
    }
    let sent_before = a.requests() + b.requests() + c.requests() + d.requests();

    // drain, maint and weight 0: only d is usable, and it is the pick.
    for (x, body) in [
        (&a, r#"{"state":"drain"}"#),
        (&b, r#"{"state":"maint"}"#),
        (&c, r#"{"weight":0}"#),
    ] {
        let path = format!("/api/v1/pools/p/backends/{}", x.addr);
        assert_eq!(put(admin, &path, Some("t"), body).await.status, 200);
    }
    let v = json(
        admin,
        "/api/v1/explain?host=home.test&path=/x&client=10.1.2.3",
    )
    .await;
    assert_eq!(reasons(&v, 0, 0), ["drain"]);
    assert_eq!(reasons(&v, 0, 1), ["maint"]);
    assert_eq!(reasons(&v, 0, 2), ["weight_zero"]);
    assert_eq!(reasons(&v, 0, 3), Vec::<String>::new());
    assert_eq!(v["pools"][0]["backends"][0]["usable"], false);
    assert_eq!(v["pools"][0]["would_pick"], d.addr.to_string());
    assert_eq!(v["pools"][0]["split_weight"], 100);

    // down: its checks fail.
    eventually(5, || sick.checks() >= 2).await;
    let v = json(admin, "/api/v1/explain?path=/sick").await;
    assert_eq!(v["route"], "sick");
    assert_eq!(reasons(&v, 0, 0), ["down"]);
    assert_eq!(
        v["pools"][0]["would_pick"],
        Value::Null,
        "round robin moves on"
    );
    // breaker_open: one failure opens it.
    assert_eq!(get(&cl, public, "x", "/brk").await.status, 500);
    let v = json(admin, "/api/v1/explain?path=/brk").await;
    assert_eq!(reasons(&v, 0, 0), ["breaker_open"]);
    // rate_limited: the burst of one is spent.
    assert_eq!(get(&cl, public, "x", "/rl").await.status, 200);
    let v = json(admin, "/api/v1/explain?path=/rl").await;
    assert_eq!(reasons(&v, 0, 0), ["rate_limited"]);
    // max_in_flight: one request holds the only slot.
    busy.set_delay(Duration::from_millis(800));
    let held = {
        let cl = cl.clone();
        tokio::spawn(async move { get(&cl, public, "x", "/busy").await })
    };
    eventually(5, || busy.requests() == 1).await;
    let v = json(admin, "/api/v1/explain?path=/busy").await;
    assert_eq!(reasons(&v, 0, 0), ["max_in_flight"]);
    assert_eq!(within(5, held).await.unwrap().status, 200);

    // A redirect route, and no route at all.
    let v = json(admin, "/api/v1/explain?host=h.test&path=/old/a%3Fq%3D1").await;
    assert_eq!(v["route"], "old");
    assert_eq!(v["pools"], serde_json::json!([]));
    assert_eq!(v["redirect"], "http://h.test/new?q=1");
    let v = json(admin, "/api/v1/explain?host=nowhere.test&path=/").await;
    assert_eq!(v["route"], Value::Null);
    assert!(v["reason"].as_str().unwrap().contains("no route"), "{v}");
    assert_eq!(
        get(&cl, admin, "admin", "/api/v1/explain?client=banana")
            .await
            .status,
        400
    );
    // explain sent nothing to any backend.
    assert_eq!(
        a.requests() + b.requests() + c.requests() + d.requests(),
        sent_before
    );
    s.shutdown(Duration::from_secs(1)).await;
}
