//! Header rules, prefix and host rewrites: what the backend and the client
//! see, over HTTP/1.1 and HTTP/2 (h2c); and the rules --check refuses.

mod support;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::*;

fn toml(b: &Backend) -> String {
    format!(
        r#"
[log]
access_log = false
[[listener]]
name = "public"
bind = "127.0.0.1:0"
[[route]]
name = "api"
path_prefix = "/api"
pool = "p"
strip_prefix = true
rewrite_host = "internal.svc"
request_headers = {{ set = {{ "X-Env" = "prod" }}, add = {{ "x-tag" = "edge" }}, remove = ["x-debug"] }}
response_headers = {{ set = {{ "strict-transport-security" = "max-age=63072000" }}, add = {{ "x-served-by" = "sluice" }}, remove = ["x-backend"] }}
[[route]]
name = "v2"
path_prefix = "/old"
pool = "p"
rewrite_prefix = "/v2"
[[route]]
name = "plain"
pool = "p"
[pool.p]
backends = [{{ addr = "{}" }}]
"#,
        b.addr
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_rules_and_rewrites_reach_backend_and_client() {
    let b = Backend::start("b").await;
    let s = sluice(&toml(&b)).await;
    let a = addr(&s, "public").await;
    for c in [client(), h2c_client()] {
        let req = Request::get(format!("http://{a}/api/users/7?x=1"))
            .header("host", "shop.test")
            .header("x-env", "dev")
            .header("x-tag", "client")
            .header("x-debug", "1")
            .header("x-keep", "yes")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let got = send(&c, req).await;
        assert_eq!(got.status, 200);
        let seen = b.last();
        assert_eq!(seen.uri, "/users/7?x=1", "strip_prefix keeps the query");
        assert_eq!(seen.headers["host"], "internal.svc");
        // set replaces every value, add appends one, remove deletes.
        let env: Vec<_> = seen.headers.get_all("x-env").iter().collect();
        assert_eq!(env, ["prod"]);
        let tags: Vec<_> = seen.headers.get_all("x-tag").iter().collect();
        assert_eq!(tags, ["client", "edge"]);
        assert!(seen.headers.get("x-debug").is_none());
        assert_eq!(seen.headers["x-keep"], "yes");
        // X-Forwarded-Host keeps the client's host.
        let fwd_host = seen.headers["x-forwarded-host"].to_str().unwrap();
        assert!(
            fwd_host == "shop.test" || fwd_host.starts_with("127.0.0.1"),
            "{fwd_host}"
        );
        // Response rules.
        assert_eq!(got.header("strict-transport-security"), "max-age=63072000");
        assert_eq!(got.header("x-served-by"), "sluice");
        assert_eq!(got.header("x-backend"), "");
        assert!(!got.header("x-request-id").is_empty());
        assert_eq!(got.body, "b");

        // "/api" alone becomes "/".
        send(
            &c,
            Request::get(format!("http://{a}/api"))
                .header("host", "shop.test")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
        assert_eq!(b.last().uri, "/");
        // rewrite_prefix replaces the prefix by whole segments.
        send(
            &c,
            Request::get(format!("http://{a}/old/items?q=2"))
                .header("host", "shop.test")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
        assert_eq!(b.last().uri, "/v2/items?q=2");
        // A route without rules is forwarded as it came.
        let got = send(
            &c,
            Request::get(format!("http://{a}/other"))
                .header("host", "shop.test")
                .header("x-debug", "1")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
        assert_eq!(b.last().uri, "/other");
        assert_eq!(b.last().headers["x-debug"], "1");
        assert_eq!(got.header("x-backend"), "b");
    }
}

#[test]
fn check_refuses_rules_on_reserved_or_invalid_headers() {
    let base = "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n[pool.p]\nbackends = [{ addr = \"127.0.0.1:1\" }]\n[[route]]\npool = \"p\"\n";
    let cases = [
        (
            "request_headers = { set = { \"connection\" = \"close\" } }",
            "route[0].request_headers.set.connection",
        ),
        (
            "request_headers = { remove = [\"Host\"] }",
            "route[0].request_headers.remove",
        ),
        (
            "request_headers = { add = { \"x-forwarded-for\" = \"1.2.3.4\" } }",
            "route[0].request_headers.add.x-forwarded-for",
        ),
        (
            "response_headers = { set = { \"transfer-encoding\" = \"chunked\" } }",
            "route[0].response_headers.set.transfer-encoding",
        ),
        (
            "response_headers = { set = { \"x-request-id\" = \"1\" } }",
            "route[0].response_headers.set.x-request-id",
        ),
        (
            "response_headers = { set = { \"content-length\" = \"1\" } }",
            "route[0].response_headers.set.content-length",
        ),
        (
            "request_headers = { set = { \"bad name\" = \"1\" } }",
            "route[0].request_headers.set",
        ),
        (
            "request_headers = { set = { \"x-ok\" = \"line\\nbreak\" } }",
            "route[0].request_headers.set.x-ok",
        ),
        (
            "strip_prefix = true\nrewrite_prefix = \"/v2\"",
            "route[0].rewrite_prefix",
        ),
        ("rewrite_host = \"bad host\"", "route[0].rewrite_host"),
    ];
    for (extra, key) in cases {
        let e = sluice::config::Config::parse(&format!("{base}{extra}\n"))
            .expect_err(extra)
            .to_string();
        assert!(e.contains(key), "{extra}: expected {key} in:\n{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_change_on_reload_and_show_in_the_config_endpoint() {
    let b = Backend::start("b").await;
    let text = |v: &str| {
        format!(
            "[log]\naccess_log = false\n[admin]\nbind = \"127.0.0.1:0\"\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n\
             [[route]]\nname = \"r\"\npool = \"p\"\nresponse_headers = {{ set = {{ \"x-version\" = \"{v}\" }} }}\n\
             request_headers = {{ set = {{ \"authorization\" = \"Bearer s3cr3t\" }} }}\n\
             [pool.p]\nbackends = [{{ addr = \"{}\" }}]\n",
            b.addr
        )
    };
    let s = sluice(&text("one")).await;
    let a = addr(&s, "public").await;
    let admin = s.admin_addr().await.unwrap();
    assert_eq!(get(&client(), a, "x", "/").await.header("x-version"), "one");
    assert_eq!(b.last().headers["authorization"], "Bearer s3cr3t");
    let shown = get(&client(), admin, "x", "/api/v1/config").await;
    assert_eq!(shown.header("content-type"), "application/json");
    let v: serde_json::Value = serde_json::from_str(&shown.body).unwrap();
    assert_eq!(v["route"][0]["response_headers"]["set"]["x-version"], "one");
    assert!(!shown.body.contains("s3cr3t"), "{}", shown.body);
    s.reload(sluice::config::Config::parse(&text("two")).unwrap())
        .await
        .unwrap();
    assert_eq!(get(&client(), a, "x", "/").await.header("x-version"), "two");
    let v: serde_json::Value =
        serde_json::from_str(&get(&client(), admin, "x", "/api/v1/config").await.body).unwrap();
    assert_eq!(v["route"][0]["response_headers"]["set"]["x-version"], "two");
}
