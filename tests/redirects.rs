//! Redirect routes: Location built from the rule and the request, the
//! status the rule names, nothing forwarded.

mod support;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_keep_what_the_rule_does_not_give() {
    let b = Backend::start("b").await;
    let toml = format!(
        r#"
[log]
access_log = false
[[listener]]
name = "public"
bind = "127.0.0.1:0"
[[route]]
name = "https"
host = "example.com"
redirect = {{ scheme = "https", code = 308 }}
[[route]]
name = "moved"
path_prefix = "/old"
redirect = {{ prefix = "/new", code = 301 }}
[[route]]
name = "elsewhere"
path_prefix = "/go"
redirect = {{ host = "other.test", port = 8443, scheme = "https", path = "/landing" }}
[[route]]
name = "app"
pool = "p"
[pool.p]
backends = [{{ addr = "{}" }}]
"#,
        b.addr
    );
    let s = sluice(&toml).await;
    let a = addr(&s, "public").await;
    let go = |host: &str, path: &str| {
        Request::get(format!("http://{a}{path}"))
            .header("host", host)
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    // The scheme's well-known port replaces the request's; the default
    // port is left out; path and query are kept.
    let got = send(&client(), go("example.com:8080", "/cart?id=7")).await;
    assert_eq!(got.status, 308);
    assert_eq!(got.header("location"), "https://example.com/cart?id=7");
    assert!(got.header("content-type").starts_with("text/plain"));
    assert!(got.body.contains(got.header("x-request-id")));
    // HTTP/2 carries the host in :authority (here the URI's, 127.0.0.1).
    for c in [client(), h2c_client()] {
        // No scheme, no port: the request's scheme and port stay.
        let got = send(&c, go("shop.test:8080", "/old/a/b?x=1")).await;
        assert_eq!(got.status, 301);
        let loc = got.header("location");
        let port = a.port();
        assert!(
            loc == "http://shop.test:8080/new/a/b?x=1"
                || loc == format!("http://127.0.0.1:{port}/new/a/b?x=1"),
            "{loc}"
        );
        // Default code 302; host, port and path from the rule.
        let got = send(&c, go("shop.test", "/go/x?k=v")).await;
        assert_eq!(
            (got.status, got.header("location")),
            (302, "https://other.test:8443/landing?k=v")
        );
    }
    assert_eq!(b.requests(), 0, "a redirect forwards nothing");
    // The raw HTTP/1 form, where Host is what the client sent.
    let resp = raw(
        a,
        b"GET /old?q=1 HTTP/1.1\r\nHost: Shop.Test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 301, "{resp}");
    assert!(
        resp.contains("location: http://Shop.Test/new?q=1\r\n"),
        "{resp}"
    );
    assert_eq!(get(&client(), a, "shop.test", "/app").await.body, "b");
}

#[test]
fn check_refuses_bad_redirects() {
    let base = "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n[pool.p]\nbackends = [{ addr = \"127.0.0.1:1\" }]\n";
    let cases = [
        (
            "[[route]]\nname = \"r\"\nredirect = { code = 200 }",
            "route[0].redirect.code",
        ),
        (
            "[[route]]\nname = \"r\"\nredirect = { scheme = \"ftp\" }",
            "route[0].redirect.scheme",
        ),
        (
            "[[route]]\nname = \"r\"\nredirect = { path = \"/a\", prefix = \"/b\" }",
            "route[0].redirect",
        ),
        (
            "[[route]]\nname = \"r\"\npool = \"p\"\nredirect = { scheme = \"https\" }",
            "route[0]",
        ),
        ("[[route]]\nname = \"r\"\n", "route[0]"),
    ];
    for (extra, key) in cases {
        let e = sluice::config::Config::parse(&format!("{base}{extra}\n"))
            .expect_err(extra)
            .to_string();
        assert!(e.contains(key), "{extra}: expected {key} in:\n{e}");
    }
}
