//! Sticky sessions by cookie, across two sluice instances that share only
//! their config: the cookie is opaque, both instances honour it, drain
//! keeps the sessions pinned to a backend, and an unusable backend's
//! cookie is replaced.

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use std::time::Duration;
use support::*;

async fn with_cookie(c: &TestClient, addr: std::net::SocketAddr, cookie: Option<&str>) -> Got {
    let mut req = Request::get(format!("http://{addr}/")).header("host", "x");
    if let Some(v) = cookie {
        req = req.header("cookie", format!("theme=dark; {v}"));
    }
    send(c, req.body(Full::new(Bytes::new())).unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sticky_cookie_pins_a_client_on_every_instance_until_its_backend_is_unusable() {
    let backends = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("{{ addr = \"{}\" }}", b.addr))
        .collect();
    let token = temp_file("token", "t");
    let text = format!(
        "[admin]\nbind = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n[log]\naccess_log = false\n\
         [[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n[[route]]\npool = \"p\"\n\
         [pool.p]\nsticky = {{ cookie = \"srv\", ttl = \"1h\" }}\nbackends = [{}]\n",
        token.display(),
        list.join(", ")
    );
    let one = sluice(&text).await;
    let two = sluice(&text).await;
    let (a1, a2) = (addr(&one, "public").await, addr(&two, "public").await);
    let c = client();
    // The first answer sets the cookie: opaque, with the ttl.
    let first = with_cookie(&c, a1, None).await;
    let set = first.header("set-cookie").to_string();
    assert!(
        set.starts_with("srv=") && set.contains("; Path=/; HttpOnly; Max-Age=3600"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    assert_eq!(cookie.len(), "srv=".len() + 16, "{cookie}");
    for b in &backends {
        assert!(
            !set.contains(&b.addr.port().to_string()),
            "no address in {set}"
        );
    }
    let pinned = first.body.clone();
    // Both instances send the cookie's holder to the same backend, and do
    // not set it again.
    for addr in [a1, a2, a1, a2, a2, a1] {
        let got = with_cookie(&c, addr, Some(&cookie)).await;
        assert_eq!(got.body, pinned);
        assert_eq!(got.header("set-cookie"), "");
    }
    // Over HTTP/2 too.
    let h2 = h2c_client();
    let req = Request::get(format!("http://{a2}/"))
        .header("cookie", cookie.clone())
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(&h2, req).await.body, pinned);
    // Drained on instance two: pinned sessions stay, others go elsewhere.
    let held = backends.iter().find(|b| b.name == pinned).unwrap();
    let put = |admin: std::net::SocketAddr, state: &str| {
        Request::put(format!(
            "http://{admin}/api/v1/pools/p/backends/{}",
            held.addr
        ))
        .header("authorization", "Bearer t")
        .body(Full::new(Bytes::from(format!("{{\"state\":\"{state}\"}}"))))
        .unwrap()
    };
    let admin2 = two.admin_addr().await.unwrap();
    assert_eq!(send(&c, put(admin2, "drain")).await.status, 200);
    for _ in 0..4 {
        assert_eq!(with_cookie(&c, a2, Some(&cookie)).await.body, pinned);
        assert_ne!(with_cookie(&c, a2, None).await.body, pinned);
    }
    // Explain agrees.
    let q = format!(
        "/api/v1/explain?path=/&header=cookie:{}",
        cookie.replace('=', "%3D")
    );
    let v: serde_json::Value = serde_json::from_str(&get(&c, admin2, "x", &q).await.body).unwrap();
    assert_eq!(v["pools"][0]["would_pick"], held.addr.to_string(), "{v}");
    // In maintenance it is unusable: a new pick, and a new cookie.
    assert_eq!(send(&c, put(admin2, "maint")).await.status, 200);
    let moved = with_cookie(&c, a2, Some(&cookie)).await;
    assert_ne!(moved.body, pinned);
    let replaced = moved
        .header("set-cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(
        replaced.starts_with("srv=") && replaced != cookie,
        "{replaced}"
    );
    // The replacement holds on the other instance as well.
    assert_eq!(with_cookie(&c, a1, Some(&replaced)).await.body, moved.body);
    one.shutdown(Duration::from_secs(1)).await;
    two.shutdown(Duration::from_secs(1)).await;
}
