//! Route matching by method, header and query besides host and path, with
//! the SPEC's precedence, over HTTP/1.1 and HTTP/2 (h2c).

mod support;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::*;

async fn pools(names: &[&str]) -> (Vec<std::sync::Arc<Backend>>, String) {
    let mut backends = Vec::new();
    let mut toml = String::new();
    for n in names {
        let b = Backend::start(n).await;
        toml.push_str(&format!(
            "[pool.{n}]\nbackends = [{{ addr = \"{}\" }}]\n",
            b.addr
        ));
        backends.push(b);
    }
    (backends, toml)
}

/// (method, path, headers, the pool that should answer)
type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);

fn request(
    method: &str,
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Request<Full<Bytes>> {
    let mut r = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("host", "shop.test");
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(Full::new(Bytes::new())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_headers_and_query_pick_the_route_with_the_most_conditions() {
    let (_b, pool_toml) = pools(&["base", "posts", "canary", "debug", "other"]).await;
    let toml = format!(
        r#"
[log]
access_log = false
[[listener]]
name = "public"
bind = "127.0.0.1:0"
[[route]]
path_prefix = "/api"
pool = "base"
[[route]]
path_prefix = "/api"
methods = ["POST", "PUT"]
pool = "posts"
[[route]]
path_prefix = "/api"
headers = {{ "X-Canary" = "1" }}
pool = "canary"
[[route]]
path_prefix = "/api"
headers = {{ "x-canary" = "1" }}
query = {{ "debug" = "on air" }}
pool = "debug"
[[route]]
path_prefix = "/api/deeper"
pool = "other"
{pool_toml}"#
    );
    let s = sluice(&toml).await;
    let a = addr(&s, "public").await;
    for c in [client(), h2c_client()] {
        let cases: &[Case] = &[
            ("GET", "/api/x", &[], "base"),
            ("POST", "/api/x", &[], "posts"),
            ("GET", "/api/x", &[("x-canary", "1")], "canary"),
            ("GET", "/api/x", &[("x-canary", "2")], "base"),
            // Percent-decoded: "on%20air" is "on air".
            (
                "GET",
                "/api/x?a=1&debug=on%20air",
                &[("x-canary", "1")],
                "debug",
            ),
            ("GET", "/api/x?debug=on%20air", &[], "base"),
            ("GET", "/api/x?debug=on", &[("x-canary", "1")], "canary"),
            // Tied at one condition each: the earlier route in the file.
            ("POST", "/api/x", &[("x-canary", "1")], "posts"),
            // A longer prefix beats any number of conditions.
            (
                "GET",
                "/api/deeper/y?debug=on%20air",
                &[("x-canary", "1")],
                "other",
            ),
        ];
        for (method, path, headers, want) in cases {
            let got = send(&c, request(method, a, path, headers)).await;
            assert_eq!(got.status, 200, "{method} {path} {headers:?}");
            assert_eq!(&got.body, want, "{method} {path} {headers:?}");
        }
    }
    // Only conditional routes for a path: a request none of them takes is 404.
    let (_b2, pool_toml) = pools(&["only"]).await;
    let s2 = sluice(&format!(
        "[log]\naccess_log = false\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n\
         [[route]]\nmethods = [\"DELETE\"]\npool = \"only\"\n{pool_toml}"
    ))
    .await;
    let a2 = addr(&s2, "public").await;
    assert_eq!(
        send(&client(), request("GET", a2, "/", &[])).await.status,
        404
    );
    assert_eq!(
        send(&client(), request("DELETE", a2, "/", &[])).await.body,
        "only"
    );
}
