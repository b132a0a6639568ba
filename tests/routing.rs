//! Route precedence, listener filters and 404, through real listeners.

mod support;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn most_specific_route_wins() {
    let names = [
        "exact",
        "exact-admin",
        "wild",
        "prefix",
        "root",
        "first",
        "second",
        "internal",
    ];
    let mut backends = Vec::new();
    for n in names {
        backends.push(Backend::start(n).await);
    }
    let pools: String = backends
        .iter()
        .map(|b| {
            format!(
                "[pool.{}]\nbackends = [{{ addr = \"{}\" }}]\n",
                b.name.replace('-', "_"),
                b.addr
            )
        })
        .collect();
    let toml = format!(
        r#"
[log]
access_log = false
[[listener]]
name = "public"
bind = "127.0.0.1:0"
[[listener]]
name = "private"
bind = "127.0.0.1:0"
[[route]]
pool = "root"
[[route]]
path_prefix = "/v1"
pool = "prefix"
[[route]]
host = "*.example.com"
pool = "wild"
[[route]]
host = "api.example.com"
path_prefix = "/v1"
pool = "exact"
[[route]]
host = "api.example.com"
path_prefix = "/v1/admin"
pool = "exact_admin"
[[route]]
host = "tie.example.org"
path_prefix = "/same"
pool = "first"
[[route]]
host = "tie.example.org"
path_prefix = "/same"
pool = "second"
[[route]]
host = "internal.example.org"
listeners = ["private"]
pool = "internal"
{pools}"#
    );
    let s = sluice(&toml).await;
    let public = addr(&s, "public").await;
    let private = addr(&s, "private").await;
    let c = client();
    let cases = [
        ("api.example.com", "/v1/users", "exact"),
        ("API.Example.com:8080", "/v1", "exact"),
        ("api.example.com", "/v1/admin/x", "exact_admin"),
        ("api.example.com", "/v2", "wild"),
        ("deep.sub.example.com", "/v1", "wild"),
        ("example.com", "/v1/x", "prefix"),
        ("example.com", "/v10", "root"),
        ("other.org", "/", "root"),
        ("tie.example.org", "/same/x", "first"),
        ("internal.example.org", "/", "root"),
    ];
    for (host, path, want) in cases {
        let got = get(&c, public, host, path).await;
        assert_eq!(got.body.replace('-', "_"), want, "{host}{path}");
    }
    assert_eq!(
        get(&c, private, "internal.example.org", "/").await.body,
        "internal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_match_is_404_naming_the_request_id() {
    let b = Backend::start("b").await;
    let toml = format!(
        "[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n[[route]]\nhost = \"only.example.com\"\npool = \"p\"\n[pool.p]\nbackends = [{{ addr = \"{}\" }}]\n",
        b.addr
    );
    let s = sluice(&toml).await;
    let addr = addr(&s, "public").await;
    let c = client();
    let got = get(&c, addr, "elsewhere.example.com", "/").await;
    assert_eq!(got.status, 404);
    assert_eq!(got.header("content-type"), "text/plain; charset=utf-8");
    let id = got.header("x-request-id").to_string();
    assert_eq!(id.len(), 32);
    assert!(got.body.contains(&id), "{}", got.body);
    assert_eq!(b.requests(), 0);
}
