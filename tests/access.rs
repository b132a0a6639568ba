//! Access control: allow/deny on the client address after trusted_proxies
//! (403), basic auth with a bcrypt htpasswd file re-read on reload (401).

mod support;
use base64::Engine;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::*;

fn basic(user: &str, password: &str) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {b}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_and_deny_apply_to_the_client_address_after_trusted_proxies() {
    let b = Backend::start("b").await;
    let toml = format!(
        r#"
[log]
access_log = false
[[listener]]
name = "direct"
bind = "127.0.0.1:0"
[[listener]]
name = "behind"
bind = "127.0.0.1:0"
trusted_proxies = ["127.0.0.1/32"]
[[route]]
name = "office"
path_prefix = "/admin"
allow = ["10.0.0.0/8", "192.0.2.7"]
deny = ["10.9.0.0/16"]
pool = "p"
[[route]]
name = "public"
deny = ["127.0.0.0/8"]
path_prefix = "/blocked"
pool = "p"
[[route]]
name = "rest"
pool = "p"
[pool.p]
backends = [{{ addr = "{}" }}]
"#,
        b.addr
    );
    let s = sluice(&toml).await;
    let direct = addr(&s, "direct").await;
    let behind = addr(&s, "behind").await;
    let c = client();
    let req = |a: std::net::SocketAddr, path: &str, xff: Option<&str>| {
        let mut r = Request::get(format!("http://{a}{path}")).header("host", "x");
        if let Some(x) = xff {
            r = r.header("x-forwarded-for", x);
        }
        r.body(Full::new(Bytes::new())).unwrap()
    };
    // Directly from 127.0.0.1: not in allow.
    let got = send(&c, req(direct, "/admin", None)).await;
    assert_eq!(got.status, 403);
    assert!(
        got.body.contains(got.header("x-request-id")),
        "{}",
        got.body
    );
    // X-Forwarded-For is not believed from an untrusted peer.
    assert_eq!(
        send(&c, req(direct, "/admin", Some("10.1.2.3")))
            .await
            .status,
        403
    );
    // From a trusted proxy it is: allowed, allowed, denied, not allowed.
    assert_eq!(
        send(&c, req(behind, "/admin", Some("10.1.2.3")))
            .await
            .status,
        200
    );
    assert_eq!(
        send(&c, req(behind, "/admin", Some("192.0.2.7")))
            .await
            .status,
        200
    );
    assert_eq!(
        send(&c, req(behind, "/admin", Some("10.9.1.1")))
            .await
            .status,
        403
    );
    assert_eq!(
        send(&c, req(behind, "/admin", Some("203.0.113.9")))
            .await
            .status,
        403
    );
    // deny alone.
    assert_eq!(send(&c, req(direct, "/blocked", None)).await.status, 403);
    assert_eq!(
        send(&c, req(behind, "/blocked", Some("198.51.100.1")))
            .await
            .status,
        200
    );
    assert_eq!(
        send(&h2c_client(), req(direct, "/blocked", None))
            .await
            .status,
        403
    );
    assert_eq!(send(&c, req(direct, "/other", None)).await.status, 200);
    assert_eq!(b.requests(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_checks_bcrypt_hides_credentials_and_rereads_its_file_on_reload() {
    let b = Backend::start("b").await;
    let users = temp_file(
        "htpasswd",
        &format!("alice:{}\n", bcrypt::hash("wonderland", 4).unwrap()),
    );
    let toml = |users: &std::path::Path| {
        format!(
            r#"
[log]
access_log = false
[[listener]]
name = "public"
bind = "127.0.0.1:0"
[[route]]
name = "ops"
basic_auth = {{ realm = "ops area", users_file = "{}" }}
pool = "p"
[pool.p]
backends = [{{ addr = "{}" }}]
"#,
            users.display(),
            b.addr
        )
    };
    let config = temp_file("sluice.toml", &toml(&users));
    let s = sluice(&std::fs::read_to_string(&config).unwrap()).await;
    let a = addr(&s, "public").await;
    let req = |auth: Option<String>| {
        let mut r = Request::get(format!("http://{a}/")).header("host", "x");
        if let Some(v) = auth {
            r = r.header("authorization", v);
        }
        r.body(Full::new(Bytes::new())).unwrap()
    };
    for c in [client(), h2c_client()] {
        let got = send(&c, req(None)).await;
        assert_eq!(got.status, 401);
        assert_eq!(
            got.header("www-authenticate"),
            "Basic realm=\"ops area\", charset=\"UTF-8\""
        );
        assert!(got.body.contains(got.header("x-request-id")));
        assert_eq!(
            send(&c, req(Some(basic("alice", "wrong")))).await.status,
            401
        );
        assert_eq!(
            send(&c, req(Some(basic("bob", "wonderland")))).await.status,
            401
        );
        assert_eq!(send(&c, req(Some("Bearer abc".into()))).await.status, 401);
        let got = send(&c, req(Some(basic("alice", "wonderland")))).await;
        assert_eq!((got.status, got.body.as_str()), (200, "b"));
        assert!(
            b.last().headers.get("authorization").is_none(),
            "credentials stop at sluice"
        );
    }
    assert_eq!(b.requests(), 2);
    // The file changes; a reload reads it again.
    std::fs::write(
        &users,
        format!("bob:{}\n", bcrypt::hash("builder", 4).unwrap()),
    )
    .unwrap();
    s.reload_from(&config).await.unwrap();
    assert_eq!(
        send(&client(), req(Some(basic("alice", "wonderland"))))
            .await
            .status,
        401
    );
    assert_eq!(
        send(&client(), req(Some(basic("bob", "builder"))))
            .await
            .status,
        200
    );
    // A broken file fails the reload and the old users stay.
    std::fs::write(&users, "carol:{SHA}not-bcrypt\n").unwrap();
    let e = s.reload_from(&config).await.unwrap_err().to_string();
    assert!(e.contains("route[0].basic_auth.users_file"), "{e}");
    assert_eq!(
        send(&client(), req(Some(basic("bob", "builder"))))
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_guesser_does_not_slow_logged_in_clients() {
    let b = Backend::start("b").await;
    // Cost 10: about 50-100 ms a check, the cost a real file would have.
    let users = temp_file(
        "htpasswd",
        &format!("alice:{}\n", bcrypt::hash("pw", 10).unwrap()),
    );
    let s = sluice(&format!(
        "[log]\naccess_log = false\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n\
         [[route]]\nname = \"ops\"\nbasic_auth = {{ realm = \"r\", users_file = \"{}\" }}\npool = \"p\"\n\
         [pool.p]\nbackends = [{{ addr = \"{}\" }}]\n",
        users.display(),
        b.addr
    ))
    .await;
    let a = addr(&s, "public").await;
    let req = |auth: String| {
        Request::get(format!("http://{a}/"))
            .header("host", "x")
            .header("authorization", auth)
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    // Log in once: the credential is cached.
    assert_eq!(send(&client(), req(basic("alice", "pw"))).await.status, 200);
    // 40 wrong guesses in parallel keep the bcrypt queue full...
    let mut guesses = Vec::new();
    for i in 0..40 {
        let r = req(basic("alice", &format!("guess{i}")));
        guesses.push(tokio::spawn(async move { send(&client(), r).await.status }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    // ...while the logged-in client is answered without waiting for them.
    let started = std::time::Instant::now();
    for _ in 0..5 {
        assert_eq!(send(&client(), req(basic("alice", "pw"))).await.status, 200);
    }
    let logged_in = started.elapsed();
    for g in guesses {
        assert_eq!(g.await.unwrap(), 401);
    }
    let all_guesses = started.elapsed();
    assert!(
        logged_in * 4 < all_guesses,
        "logged-in requests took {logged_in:?}, the guesses {all_guesses:?}"
    );
}
