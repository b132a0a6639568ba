//! What route policy costs per request: header rules on the request and
//! response heads, a redirect answer, the route conditions, and response
//! compression per MiB for each coding. Run with
//! `cargo bench --bench policy`; the README quotes these against the plain
//! head writes of `hot_path`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use sluice::compress::{Coding, Encoder};
use sluice::config::Config;
use sluice::http1::codec::{parse_request, parse_response, RequestHead, ResponseHead};
use sluice::http1::write::{
    request_head, response_head, Connection, Edits, Forwarded, Framing, Rewrite,
};

fn route_config() -> Config {
    Config::parse(
        r#"
[[listener]]
name = "l"
bind = "127.0.0.1:0"

[[route]]
name = "api"
path_prefix = "/api"
pool = "p"
strip_prefix = true
request_headers = { set = { "x-env" = "prod" }, add = { "x-tag" = "a" }, remove = ["x-debug"] }
response_headers = { set = { "strict-transport-security" = "max-age=63072000" }, remove = ["server"] }

[[route]]
name = "moved"
path_prefix = "/old"
redirect = { scheme = "https", prefix = "/new", code = 308 }

[pool.p]
backends = [{ addr = "127.0.0.1:1" }]
"#,
    )
    .unwrap()
}

fn heads(c: &mut Criterion) {
    let config = route_config();
    let route = &config.routes[0];
    let head = "GET /api/users/42?x=1 HTTP/1.1\r\nhost: www.example.com\r\nuser-agent: bench/1.0\r\naccept: */*\r\naccept-encoding: gzip, br\r\nx-debug: 1\r\ncookie: session=0123456789abcdef\r\n\r\n";
    let mut parsed = RequestHead::new();
    let mut scanned = 0;
    parse_request(head.as_bytes(), &mut parsed, &mut scanned, 65536).unwrap();
    let fwd = Forwarded {
        peer: [192, 0, 2, 1].into(),
        https: true,
        request_id: b"0123456789abcdef0123456789abcdef",
    };
    let mut out = Vec::with_capacity(4096);
    let mut group = c.benchmark_group("policy/request head");
    group.bench_function("plain", |b| {
        b.iter(|| {
            out.clear();
            request_head(
                &mut out,
                head.as_bytes(),
                &parsed,
                &fwd,
                &Rewrite::default(),
            );
            black_box(out.len())
        })
    });
    group.bench_function("header rules + strip_prefix", |b| {
        b.iter(|| {
            out.clear();
            let path = sluice::proxy::policy::rewrite_path(route, "/api/users/42", Some("x=1"));
            request_head(
                &mut out,
                head.as_bytes(),
                &parsed,
                &fwd,
                &Rewrite {
                    path: path.as_deref().map(str::as_bytes),
                    rules: Some(&route.request_headers),
                    ..Default::default()
                },
            );
            black_box(out.len())
        })
    });
    group.finish();
    let response = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 5120\r\nserver: app/1.0\r\ndate: Sat, 21 Nov 2026 07:00:00 GMT\r\n\r\n";
    let mut resp = ResponseHead::new();
    let mut scanned = 0;
    parse_response(response.as_bytes(), &mut resp, &mut scanned, 1 << 17, false).unwrap();
    let mut group = c.benchmark_group("policy/response head");
    for (name, rules) in [
        ("plain", None),
        ("header rules", Some(&route.response_headers)),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                response_head(
                    &mut out,
                    response.as_bytes(),
                    &resp,
                    b"0123456789abcdef0123456789abcdef",
                    Framing::Length(5120),
                    Connection::Default,
                    &Edits {
                        rules,
                        ..Default::default()
                    },
                );
                black_box(out.len())
            })
        });
    }
    group.finish();
    let moved = &config.routes[1];
    let sluice::config::RouteTarget::Redirect(rule) = &moved.target else {
        panic!("a redirect route");
    };
    c.bench_function("policy/redirect Location", |b| {
        b.iter(|| {
            black_box(sluice::proxy::policy::redirect(
                rule,
                moved,
                false,
                Some("www.example.com"),
                black_box("/old/page/7"),
                Some("a=1"),
            ))
        })
    });
}

/// A JSON-like body of 1 MiB, compressed in 32 KiB pieces as the relay
/// reads them.
fn compression(c: &mut Criterion) {
    let mut body = Vec::with_capacity(1 << 20);
    let mut i = 0u64;
    while body.len() < 1 << 20 {
        body.extend_from_slice(
            format!("{{\"id\":{i},\"name\":\"user {i}\",\"email\":\"u{i}@example.com\",\"score\":{}}},\n", i * 7919 % 1000).as_bytes(),
        );
        i += 1;
    }
    body.truncate(1 << 20);
    let mut group = c.benchmark_group("policy/compress 1 MiB JSON");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.sample_size(20);
    for coding in [Coding::Gzip, Coding::Br, Coding::Zstd] {
        group.bench_function(coding.name(), |b| {
            let mut out = Vec::with_capacity(1 << 20);
            b.iter(|| {
                out.clear();
                let mut e = Encoder::new(coding).unwrap();
                for piece in body.chunks(32 * 1024) {
                    e.write(piece, &mut out).unwrap();
                }
                e.finish(&mut out).unwrap();
                black_box(out.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, heads, compression);
criterion_main!(benches);
