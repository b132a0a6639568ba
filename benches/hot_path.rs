//! Micro-benchmarks of the per-request hot path: a backend pick for every
//! strategy with 3, 100 and 1,000 backends, and a route match among 1,000
//! routes. Run with `cargo bench --bench hot_path`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use sluice::backend::Backend;
use sluice::balance::{self, hash_bytes, Member};
use sluice::config::HostMatch;
use sluice::route::Router;
use std::sync::Arc;
use std::time::Duration;

fn members(n: usize) -> Vec<Member> {
    (0..n)
        .map(|i| Member {
            backend: Arc::new(Backend::new(
                "bench",
                &format!("10.{}.{}.{}:8080", i / 65536, (i / 256) % 256, i % 256),
                Duration::from_secs(1),
            )),
            weight: 1 + (i % 3) as u32,
        })
        .collect()
}

fn picks(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    use balance::Kind;
    // The config's names for the bench labels (ip_hash and url_hash share
    // the ring).
    let strategies = [
        ("round_robin", Kind::SmoothWeightedRoundRobin),
        ("least_connections", Kind::LeastConnections),
        ("least_response_time", Kind::PeakEwma),
        ("ip_hash", Kind::ConsistentHash),
        ("url_hash", Kind::ConsistentHash),
        ("random", Kind::WeightedRandom),
    ];
    for n in [3usize, 100, 1000] {
        let m = members(n);
        for (i, b) in m.iter().enumerate() {
            b.backend
                .observe_latency(Duration::from_micros(200 + (i as u64 * 37) % 900));
        }
        let mut group = c.benchmark_group(format!("pick/{n}"));
        for (name, kind) in strategies {
            let balancer = balance::build(kind, &m);
            let mut k = 0u64;
            group.bench_with_input(BenchmarkId::from_parameter(name), &name, |bench, _| {
                bench.iter(|| {
                    k = k.wrapping_add(1);
                    let key = hash_bytes(&k.to_le_bytes());
                    black_box(balancer.pick(&m, Some(key), &|_| true))
                })
            });
        }
        group.finish();
    }
}

fn routes(c: &mut Criterion) {
    let table: Vec<(Option<HostMatch>, String, usize, usize)> = (0..1000)
        .map(|i| match i % 3 {
            0 => (
                Some(HostMatch::Exact(format!("svc{i}.example.com"))),
                format!("/v{}", i % 7),
                0,
                i,
            ),
            1 => (
                Some(HostMatch::Wildcard(format!(".team{i}.example.com"))),
                "/".to_string(),
                0,
                i,
            ),
            _ => (None, format!("/api/{i}"), 0, i),
        })
        .collect();
    let router = Router::new(table);
    c.bench_function("route/1000 routes, exact host", |b| {
        b.iter(|| black_box(router.find(Some(black_box("svc300.example.com")), "/v6/users/42")))
    });
    c.bench_function("route/1000 routes, wildcard host", |b| {
        b.iter(|| black_box(router.find(Some(black_box("a.b.team301.example.com")), "/x")))
    });
    c.bench_function("route/1000 routes, path only", |b| {
        b.iter(|| black_box(router.find(Some(black_box("unknown.example.org")), "/api/998/items")))
    });
}

/// The header work of one typical browser request in the HTTP/1 engine:
/// parse and check the raw head (one httparse pass with sluice's checks),
/// write the backend's request head from its spans, parse the response
/// head and write the client's.
fn headers(c: &mut Criterion) {
    use sluice::http1::codec::{parse_request, parse_response, RequestHead, ResponseHead};
    use sluice::http1::write::{
        request_head, response_head, Connection, Edits, Forwarded, Framing, Rewrite,
    };
    let raw: &[(&str, &str)] = &[
        ("host", "www.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "en-US,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br"),
        ("connection", "keep-alive"),
        ("cookie", "session=0123456789abcdef; theme=dark"),
        ("upgrade-insecure-requests", "1"),
        ("x-forwarded-for", "203.0.113.7"),
    ];
    let mut head = String::from("GET /index.html?q=1 HTTP/1.1\r\n");
    for (k, v) in raw {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut parsed = RequestHead::new();
    c.bench_function("headers/parse and check request head (9 fields)", |b| {
        b.iter(|| {
            let mut scanned = 0;
            parse_request(black_box(head.as_bytes()), &mut parsed, &mut scanned, 65536)
        })
    });
    let mut scanned = 0;
    parse_request(head.as_bytes(), &mut parsed, &mut scanned, 65536).unwrap();
    let mut out = Vec::with_capacity(4096);
    let fwd = Forwarded {
        peer: [192, 0, 2, 1].into(),
        https: true,
        request_id: b"0123456789abcdef0123456789abcdef",
    };
    c.bench_function("headers/write backend request head (9 fields)", |b| {
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
    let response = "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: 5120\r\ncache-control: max-age=60\r\nconnection: keep-alive\r\ndate: Sat, 21 Nov 2026 07:00:00 GMT\r\n\r\n";
    let mut resp = ResponseHead::new();
    c.bench_function("headers/parse response head and write it (5 fields)", |b| {
        b.iter(|| {
            let mut scanned = 0;
            parse_response(
                black_box(response.as_bytes()),
                &mut resp,
                &mut scanned,
                1 << 17,
                false,
            )
            .unwrap();
            out.clear();
            response_head(
                &mut out,
                response.as_bytes(),
                &resp,
                b"0123456789abcdef0123456789abcdef",
                Framing::Length(5120),
                Connection::Default,
                &Edits::default(),
            );
            black_box(out.len())
        })
    });
}

/// A whole pool pick (strategy, admission, the lease taken and given
/// back) at 1,000 backends with ip_hash, with and without bounded loads
/// (`hash_balance_factor`) when nothing is overloaded.
fn pool_picks(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let backends: Vec<String> = (0..1000)
        .map(|i| format!("{{ addr = \"10.0.{}.{}:8080\" }}", i / 256, i % 256))
        .collect();
    let mut group = c.benchmark_group("pool pick/1000 ip_hash");
    // The strategy's part alone: the ring walk with the bounded-load test
    // (the backend's in-flight count against the bound) in its predicate.
    let m = members(1000);
    let ring = balance::build(balance::Kind::ConsistentHash, &m);
    let mut k = 0u64;
    group.bench_function("ring pick with the load bound", |bench| {
        bench.iter(|| {
            k = k.wrapping_add(1);
            let key = hash_bytes(&k.to_le_bytes());
            let bound = black_box(2u64);
            black_box(ring.pick(&m, Some(key), &|i| m[i].backend.in_flight() < bound))
        })
    });
    for factor in ["0.0", "1.25"] {
        let config = sluice::config::Config::parse(&format!(
            "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n[[route]]\npool = \"p\"\n\
             [pool.p]\nstrategy = \"ip_hash\"\nhash_balance_factor = {factor}\nbackends = [{}]\n",
            backends.join(", ")
        ))
        .unwrap();
        let metrics = sluice::metrics::Metrics::default();
        let snap = sluice::snapshot::Snapshot::build(config, Default::default(), None, &metrics);
        let pool = snap.pools["p"].clone();
        let mut k = 0u64;
        let label = if factor == "0.0" {
            "unbounded"
        } else {
            "hash_balance_factor 1.25"
        };
        group.bench_function(label, |bench| {
            bench.iter(|| {
                k = k.wrapping_add(1);
                let key = hash_bytes(&k.to_le_bytes());
                black_box(pool.pick(Some(key), &[]).map(|(i, _lease)| i).ok())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, picks, pool_picks, routes, headers);
criterion_main!(benches);
