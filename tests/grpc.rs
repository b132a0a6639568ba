//! HTTP/2 to backends (`protocol = "h2c"` and `"h2"`), on real sockets:
//! gRPC end to end with a tonic client and a tonic service (unary, both
//! streaming directions, status and trailing metadata, TE: trailers,
//! deadlines), HTTP/1.1 clients to an HTTP/2 pool, one multiplexed
//! connection and more only at the backend's stream limit, GOAWAY, ALPN,
//! and health checks over HTTP/2.

#[path = "grpc/backend.rs"]
mod backend;
mod support;

use backend::{H2Backend, Msg};
use bytes::Bytes;
use http::uri::PathAndQuery;
use http_body_util::Full;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::client::Grpc;
use tonic::transport::Channel;
use tonic::Code;
use tonic_prost::ProstCodec;

/// Sluice with one listener and one pool of `protocol` in front of `b`.
async fn front(
    protocol: &str,
    b: &H2Backend,
    pool_extra: &str,
) -> (sluice::Sluice, std::net::SocketAddr) {
    let toml = format!(
        "[log]\naccess_log = false\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n[[route]]\npool = \"g\"\n[pool.g]\nprotocol = \"{protocol}\"\nbackends = [{{ addr = \"{}\" }}]\n{pool_extra}\n",
        b.addr
    );
    let s = sluice(&toml).await;
    let a = addr(&s, "public").await;
    (s, a)
}

async fn grpc_client(addr: std::net::SocketAddr) -> Grpc<Channel> {
    let channel = within(
        10,
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect(),
    )
    .await
    .expect("gRPC channel to sluice");
    Grpc::new(channel)
}

fn msg(text: &str, n: u32) -> Msg {
    Msg {
        text: text.into(),
        n,
    }
}

fn path(p: &'static str) -> PathAndQuery {
    PathAndQuery::from_static(p)
}

async fn say(
    g: &mut Grpc<Channel>,
    req: tonic::Request<Msg>,
) -> Result<tonic::Response<Msg>, tonic::Status> {
    within(10, g.ready()).await.unwrap();
    within(
        10,
        g.unary(req, path("/test.Echo/Say"), ProstCodec::default()),
    )
    .await
}

#[tokio::test]
async fn grpc_unary_calls_statuses_and_trailers_pass_through_an_h2c_pool() {
    let b = backend::start(None, None).await;
    let (_s, a) = front("h2c", &b, "").await;
    let mut g = grpc_client(a).await;
    for i in 0..5 {
        let r = say(&mut g, tonic::Request::new(msg("hi", i)))
            .await
            .expect("unary call");
        assert_eq!(r.get_ref(), &msg("hi", i).with_text("echo:hi"));
        assert_eq!(r.metadata().get("x-served").unwrap(), "h2");
    }
    // An error status and its trailing metadata reach the client.
    let e = say(&mut g, tonic::Request::new(msg("fail", 0)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.message(), "refused by the test");
    assert_eq!(e.metadata().get("x-why").unwrap(), "a test");
    // The backend got HTTP/2 with TE: trailers and the forwarding fields,
    // all on one multiplexed connection.
    let seen = b.state.seen_on("/test.Echo/Say");
    assert_eq!(seen.len(), 6);
    for (version, h) in &seen {
        assert_eq!(*version, http::Version::HTTP_2);
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["content-type"], "application/grpc");
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert!(h.contains_key("x-request-id"));
    }
    assert_eq!(b.state.connections.load(Ordering::SeqCst), 1);
}

trait WithText {
    fn with_text(self, t: &str) -> Msg;
}

impl WithText for Msg {
    fn with_text(mut self, t: &str) -> Msg {
        self.text = t.into();
        self
    }
}

#[tokio::test]
async fn grpc_streams_both_ways_message_by_message() {
    let b = backend::start(None, None).await;
    let (_s, a) = front("h2c", &b, "").await;
    let mut g = grpc_client(a).await;

    // Server streaming: every message, in order.
    within(10, g.ready()).await.unwrap();
    let mut replies = within(
        10,
        g.server_streaming(
            tonic::Request::new(msg("", 50)),
            path("/test.Echo/Count"),
            ProstCodec::<Msg, Msg>::default(),
        ),
    )
    .await
    .expect("server streaming call")
    .into_inner();
    let mut got = Vec::new();
    while let Some(m) = within(10, replies.message()).await.expect("a message") {
        got.push(m.n);
    }
    assert_eq!(got, (0..50).collect::<Vec<_>>());

    // Client streaming: 20 messages summed by the backend.
    let parts: Vec<Msg> = (1..=20).map(|i| msg("x", i)).collect();
    within(10, g.ready()).await.unwrap();
    let sum = within(
        10,
        g.client_streaming(
            tonic::Request::new(tonic::codegen::tokio_stream::iter(parts)),
            path("/test.Echo/Sum"),
            ProstCodec::<Msg, Msg>::default(),
        ),
    )
    .await
    .expect("client streaming call")
    .into_inner();
    assert_eq!((sum.n, sum.text.len()), (210, 20));
    // 3.5 MiB in 256 KiB messages from an HTTP/2 client, and back in one
    // (under tonic's 4 MiB message limit): windows on both legs must open
    // again as it passes.
    let chunk = "y".repeat(256 << 10);
    let parts: Vec<Msg> = (0..14).map(|_| msg(&chunk, 1)).collect();
    within(10, g.ready()).await.unwrap();
    let sum = within(
        30,
        g.client_streaming(
            tonic::Request::new(tonic::codegen::tokio_stream::iter(parts)),
            path("/test.Echo/Sum"),
            ProstCodec::<Msg, Msg>::default(),
        ),
    )
    .await
    .expect("large client stream")
    .into_inner();
    assert_eq!((sum.n, sum.text.len()), (14, 14 * chunk.len()));

    // Both ways: each message is answered before the next is sent, so
    // nothing on the way may wait for the end of either stream.
    let (tx, rx) = tokio::sync::mpsc::channel::<Msg>(1);
    within(10, g.ready()).await.unwrap();
    tx.send(msg("first", 1)).await.unwrap();
    let mut replies = within(
        10,
        g.streaming(
            tonic::Request::new(tonic::codegen::tokio_stream::wrappers::ReceiverStream::new(
                rx,
            )),
            path("/test.Echo/Chat"),
            ProstCodec::<Msg, Msg>::default(),
        ),
    )
    .await
    .expect("bidirectional call")
    .into_inner();
    for i in 1..=5u32 {
        if i > 1 {
            tx.send(msg(&format!("m{i}"), i)).await.unwrap();
        }
        let r = within(5, replies.message())
            .await
            .expect("reply")
            .expect("not ended");
        assert_eq!(
            r.n, i,
            "reply {i} should come before the next message is sent"
        );
    }
    drop(tx);
    assert!(within(5, replies.message())
        .await
        .expect("clean end")
        .is_none());
}

#[tokio::test]
async fn grpc_deadlines_reach_the_backend_and_cancel_its_call() {
    let b = backend::start(None, None).await;
    let (_s, a) = front("h2c", &b, "").await;
    let mut g = grpc_client(a).await;
    let mut req = tonic::Request::new(msg("sleep", 0));
    req.set_timeout(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let e = say(&mut g, req).await.unwrap_err();
    assert!(
        matches!(e.code(), Code::DeadlineExceeded | Code::Cancelled),
        "got {e:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    let seen = b.state.seen_on("/test.Echo/Say");
    let timeout = seen[0]
        .1
        .get("grpc-timeout")
        .expect("grpc-timeout forwarded");
    assert!(timeout.to_str().unwrap().ends_with('m') || timeout.to_str().unwrap().ends_with('u'));
    // The client's reset goes through sluice: the backend's call is
    // dropped long before its 5 s sleep would end.
    eventually(4, || b.state.cancelled.load(Ordering::SeqCst) == 1).await;
}

fn tls_server(alpn: &[&[u8]]) -> (Arc<rustls::ServerConfig>, std::path::PathBuf) {
    let dir = support::tls::temp_dir();
    let cert = support::tls::make_cert(&dir, "h2-backend", &["backend.test"], false);
    let chain = vec![CertificateDer::from_pem_file(&cert.cert).unwrap()];
    let key = PrivateKeyDer::from_pem_file(&cert.key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    (Arc::new(config), cert.cert)
}

#[tokio::test]
async fn h2_over_tls_is_agreed_by_alpn_and_a_backend_without_it_is_a_502() {
    let (config, ca) = tls_server(&[b"h2"]);
    let b = backend::start(Some(config), None).await;
    let tls = format!(
        "[pool.g.tls]\nserver_name = \"backend.test\"\nca = {:?}\n",
        ca.display().to_string()
    );
    let (_s, a) = front("h2", &b, &tls).await;
    let mut g = grpc_client(a).await;
    let r = say(&mut g, tonic::Request::new(msg("tls", 7)))
        .await
        .expect("call over TLS");
    assert_eq!(r.get_ref().text, "echo:tls");
    let got = get(&client(), a, "site.test", "/plain").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("x-version"), "HTTP/2.0");
    assert_eq!(got.header("x-scheme"), "https");

    // A TLS backend that offers only HTTP/1.1 cannot take an h2 pool.
    let (config, ca) = tls_server(&[b"http/1.1"]);
    let old = backend::start(Some(config), None).await;
    let tls = format!(
        "[pool.g.tls]\nserver_name = \"backend.test\"\nca = {:?}\n",
        ca.display().to_string()
    );
    let (_s2, a2) = front("h2", &old, &tls).await;
    let got = get(&client(), a2, "site.test", "/plain").await;
    assert_eq!(got.status, 502);
    assert!(old.state.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn http1_clients_reach_an_h2_pool_with_bodies_and_trailers() {
    let b = backend::start(None, None).await;
    let (_s, a) = front("h2c", &b, "").await;
    let c = client();
    let got = get(&c, a, "app.test", "/x?y=1").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("x-version"), "HTTP/2.0");
    assert_eq!(got.header("x-authority"), "app.test");
    assert_eq!(got.header("x-scheme"), "http");
    // A body of known length, then one the client sends chunked.
    let req = http::Request::post(format!("http://{a}/up"))
        .header("host", "app.test")
        .body(Full::new(Bytes::from(vec![b'z'; 100_000])))
        .unwrap();
    let got = send(&c, req).await;
    assert_eq!((got.status, got.body.len()), (200, 100_000));
    // 6 MiB each way: far past every flow-control window on the path, so
    // it passes only if both sides' windows are opened again as it moves.
    let big: Vec<u8> = (0..6 << 20).map(|i| (i % 251) as u8).collect();
    let req = http::Request::put(format!("http://{a}/big"))
        .header("host", "app.test")
        .body(Full::new(Bytes::from(big.clone())))
        .unwrap();
    let resp = within(30, c.request(req)).await.unwrap();
    assert_eq!(resp.status(), 200);
    let back = within(30, http_body_util::BodyExt::collect(resp.into_body()))
        .await
        .unwrap()
        .to_bytes();
    assert!(back[..] == big[..], "the body came back changed");
    let mut s = tokio::net::TcpStream::connect(a).await.unwrap();
    s.write_all(
        b"POST /chunks HTTP/1.1\r\nhost: app.test\r\ntransfer-encoding: chunked\r\nte: trailers\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await
    .unwrap();
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    // The response is chunked (its length is unknown) and ends with the
    // backend's trailer, since the client said it takes trailers.
    within(10, async {
        while !text.ends_with(b"x-trailer: done\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&text));
            text.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    let text = String::from_utf8_lossy(&text).to_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    assert!(text.contains("x-te: trailers"), "{text}");
    assert!(text.contains("hello world"), "{text}");
}

#[tokio::test]
async fn one_connection_carries_the_streams_and_more_open_at_the_stream_limit() {
    // Default limits: ten requests at once share one connection.
    let b = backend::start(None, None).await;
    let (_s, a) = front("h2c", &b, "").await;
    let waits: Vec<_> = (0..10)
        .map(|_| tokio::spawn(async move { get(&client(), a, "app.test", "/hold").await.status }))
        .collect();
    eventually(10, || b.state.held.load(Ordering::SeqCst) == 10).await;
    assert_eq!(b.state.connections.load(Ordering::SeqCst), 1);
    b.state.release.add_permits(10);
    for w in waits {
        assert_eq!(within(10, w).await.unwrap(), 200);
    }

    // A backend that allows one stream per connection gets a connection
    // per request in flight.
    let one = backend::start(None, Some(1)).await;
    let (_s1, a1) = front("h2c", &one, "").await;
    // A new connection carries requests only once the backend's SETTINGS
    // are in, so even a cold burst never queues behind the limit.
    let waits: Vec<_> = (0..3)
        .map(|_| tokio::spawn(async move { get(&client(), a1, "app.test", "/hold").await.status }))
        .collect();
    eventually(10, || one.state.held.load(Ordering::SeqCst) == 3).await;
    assert_eq!(one.state.connections.load(Ordering::SeqCst), 3);
    one.state.release.add_permits(3);
    for w in waits {
        assert_eq!(within(10, w).await.unwrap(), 200);
    }
}

#[tokio::test]
async fn after_a_goaway_requests_go_on_a_new_connection() {
    let b = backend::start(None, None).await;
    let (_s, a) = front("h2c", &b, "").await;
    let c = client();
    assert_eq!(get(&c, a, "app.test", "/one").await.status, 200);
    assert_eq!(b.state.connections.load(Ordering::SeqCst), 1);
    b.state.goaway.notify_waiters();
    // Requests keep succeeding while and after the connection goes away.
    for _ in 0..20 {
        assert_eq!(get(&c, a, "app.test", "/two").await.status, 200);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(b.state.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn health_checks_of_an_h2_pool_speak_http2() {
    let b = backend::start(None, None).await;
    let check =
        "[pool.g.health_check]\npath = \"/healthz\"\ninterval = \"100ms\"\nhealthy_threshold = 1\n";
    let (_s, a) = front("h2c", &b, check).await;
    eventually(10, || b.state.checks.load(Ordering::SeqCst) >= 2).await;
    for (version, h) in b.state.seen_on("/healthz") {
        assert_eq!(version, http::Version::HTTP_2);
        assert_eq!(h["user-agent"], "sluice-health-check");
    }
    assert_eq!(get(&client(), a, "app.test", "/x").await.status, 200);
}

#[tokio::test]
async fn a_dead_h2_backend_is_passed_over_and_alone_is_a_502() {
    let live = backend::start(None, None).await;
    let dead = dead_addr().await;
    let toml = format!(
        "[log]\naccess_log = false\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n[[route]]\npool = \"g\"\n[pool.g]\nprotocol = \"h2c\"\nbackends = [{{ addr = \"{dead}\" }}, {{ addr = \"{}\" }}]\n",
        live.addr
    );
    let s = sluice(&toml).await;
    let a = addr(&s, "public").await;
    let c = client();
    for _ in 0..10 {
        assert_eq!(get(&c, a, "app.test", "/x").await.status, 200);
    }
    let only_dead = toml.replace(&format!(", {{ addr = \"{}\" }}", live.addr), "");
    let s2 = sluice(&only_dead).await;
    let got = get(&c, addr(&s2, "public").await, "app.test", "/x").await;
    assert_eq!(got.status, 502);
}

#[tokio::test]
async fn a_reload_that_changes_the_protocol_moves_to_new_connections() {
    let b = backend::start(None, None).await;
    let (s, a) = front("h2c", &b, "").await;
    let c = client();
    assert_eq!(get(&c, a, "app.test", "/x").await.status, 200);
    assert_eq!(b.state.connections.load(Ordering::SeqCst), 1);
    // Same protocol: the connection stays.
    let same = format!(
        "[log]\naccess_log = false\n[[listener]]\nname = \"public\"\nbind = \"{a}\"\n[[route]]\npool = \"g\"\n[pool.g]\nprotocol = \"h2c\"\nrequest_timeout = \"10s\"\nbackends = [{{ addr = \"{}\" }}]\n",
        b.addr
    );
    s.reload(sluice::config::Config::parse(&same).unwrap())
        .await
        .unwrap();
    assert_eq!(get(&c, a, "app.test", "/x").await.status, 200);
    assert_eq!(b.state.connections.load(Ordering::SeqCst), 1);
    // To HTTP/1.1 (the backend speaks only HTTP/2: 502) and back: a new
    // HTTP/2 connection, the old one let go.
    let http1 = same.replace("protocol = \"h2c\"\n", "");
    s.reload(sluice::config::Config::parse(&http1).unwrap())
        .await
        .unwrap();
    assert_eq!(get(&c, a, "app.test", "/x").await.status, 502);
    s.reload(sluice::config::Config::parse(&same).unwrap())
        .await
        .unwrap();
    assert_eq!(get(&c, a, "app.test", "/x").await.status, 200);
    let h2_conns = b.state.seen_on("/x").len();
    assert_eq!(h2_conns, 3, "three requests over HTTP/2");
    // The HTTP/1 attempt was a connection too: 1 + 1 + the new one.
    assert_eq!(b.state.connections.load(Ordering::SeqCst), 3);
}
