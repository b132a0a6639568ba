//! DNS discovery against a DNS server of the test's own on 127.0.0.1: every
//! A address of a name is a backend, changes are followed, addresses that
//! stay keep their state, new ones are health-checked, and a failed lookup
//! keeps the last good set (counted).

mod support;

use serde_json::Value;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

/// A tiny authoritative DNS server: answers A queries for any name with
/// `answers` (TTL 1), AAAA with nothing, and SERVFAIL while `failing`.
struct Dns {
    addr: SocketAddr,
    answers: Arc<Mutex<Vec<Ipv4Addr>>>,
    failing: Arc<AtomicBool>,
    queries: Arc<AtomicUsize>,
}

async fn dns_server() -> Dns {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let answers = Arc::new(Mutex::new(Vec::new()));
    let failing = Arc::new(AtomicBool::new(false));
    let queries = Arc::new(AtomicUsize::new(0));
    let (a, f, q) = (answers.clone(), failing.clone(), queries.clone());
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            let query = &buf[..n];
            if n < 12 {
                continue;
            }
            q.fetch_add(1, Ordering::SeqCst);
            // The question: labels up to the zero byte, then type and class.
            let mut i = 12;
            while i < n && query[i] != 0 {
                i += 1 + query[i] as usize;
            }
            let end = (i + 5).min(n);
            let qtype = u16::from_be_bytes([query[end - 4], query[end - 3]]);
            let mut out = Vec::new();
            out.extend_from_slice(&query[..2]); // id
            let failing = f.load(Ordering::SeqCst);
            out.extend_from_slice(if failing {
                &[0x81, 0x82]
            } else {
                &[0x81, 0x80]
            });
            let ips: Vec<Ipv4Addr> = if failing || qtype != 1 {
                Vec::new()
            } else {
                a.lock().unwrap().clone()
            };
            out.extend_from_slice(&[0, 1]);
            out.extend_from_slice(&(ips.len() as u16).to_be_bytes());
            out.extend_from_slice(&[0, 0, 0, 0]);
            out.extend_from_slice(&query[12..end]);
            for ip in ips {
                out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4]);
                out.extend_from_slice(&ip.octets());
            }
            let _ = socket.send_to(&out, from).await;
        }
    });
    Dns {
        addr,
        answers,
        failing,
        queries,
    }
}

/// An HTTP backend on `ip:port` answering with its IP, counting requests
/// and health checks.
async fn backend_on(ip: Ipv4Addr, port: u16) -> (Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind((ip, port)).await.unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let checks = Arc::new(AtomicUsize::new(0));
    let (r, c) = (requests.clone(), checks.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (r, c) = (r.clone(), c.clone());
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (r, c) = (r.clone(), c.clone());
                        async move {
                            if req.uri().path() == "/healthz" {
                                c.fetch_add(1, Ordering::SeqCst);
                            } else {
                                r.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from(ip.to_string())),
                            ))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (requests, checks)
}

fn backends_of(pools: &Value) -> Vec<String> {
    let mut v: Vec<String> = pools["pools"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["addr"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_follow_dns_and_keep_their_state() {
    let dns = dns_server().await;
    let port = free_port();
    let ips = [Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)];
    let (req2, _checks2) = backend_on(ips[0], port).await;
    let (_req3, checks3) = backend_on(ips[1], port).await;
    *dns.answers.lock().unwrap() = vec![ips[0]];
    // The name is known only to the test's DNS server: at load and on
    // every refresh.
    let s = sluice(&format!(
        "[dns]\nnameservers = [\"{}\"]\n[admin]\nbind = \"127.0.0.1:0\"\n[log]\naccess_log = false\n\
         [[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n[[route]]\npool = \"p\"\n\
         [pool.p]\ndns_refresh = \"200ms\"\nbackends = [{{ addr = \"svc.test:{port}\", weight = 2 }}]\n\
         [pool.p.health_check]\ninterval = \"100ms\"\n",
        dns.addr
    ))
    .await;
    let (public, admin) = (addr(&s, "public").await, s.admin_addr().await.unwrap());
    let c = client();
    let pools = || async {
        serde_json::from_str::<Value>(&get(&c, admin, "x", "/api/v1/pools").await.body).unwrap()
    };
    let one = format!("127.0.0.2:{port}");
    // From the start: the name's address is the backend (looked up before
    // sluice serves).
    assert_eq!(backends_of(&pools().await), std::slice::from_ref(&one));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while backends_of(&pools().await) != [one.clone()] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "DNS's address never became the backend: {} queries, {}",
            dns.queries.load(Ordering::SeqCst),
            pools().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..4 {
        assert_eq!(get(&c, public, "x", "/").await.body, "127.0.0.2");
    }
    let before = req2.load(Ordering::SeqCst);
    // A second address: both serve, the first keeps its state.
    *dns.answers.lock().unwrap() = ips.to_vec();
    let two = vec![one.clone(), format!("127.0.0.3:{port}")];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while backends_of(&pools().await) != two {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second address never came"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let p = pools().await;
    let first = p["pools"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["addr"] == one.as_str())
        .unwrap()
        .clone();
    assert!(
        first["requests"].as_u64().unwrap() >= 4,
        "state kept: {first}"
    );
    assert_eq!(first["weight"], 2, "the name's weight");
    eventually(5, || checks3.load(Ordering::SeqCst) >= 1).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..10 {
        seen.insert(get(&c, public, "x", "/").await.body);
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(req2.load(Ordering::SeqCst) > before);
    // DNS fails: the last good set serves on, and the failure is counted.
    dns.failing.store(true, Ordering::SeqCst);
    let failures = || async {
        get(&c, admin, "x", "/metrics")
            .await
            .body
            .lines()
            .find(|l| l.starts_with("sluice_dns_lookups_total{pool=\"p\",result=\"failure\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while failures().await < 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no failed lookup counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        backends_of(&pools().await),
        two,
        "the last good set is kept"
    );
    // Back, with only the second address: the first goes.
    dns.failing.store(false, Ordering::SeqCst);
    *dns.answers.lock().unwrap() = vec![ips[1]];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while backends_of(&pools().await) != [format!("127.0.0.3:{port}")] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first address never left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..4 {
        assert_eq!(get(&c, public, "x", "/").await.body, "127.0.0.3");
    }
    assert!(dns.queries.load(Ordering::SeqCst) > 3);
    s.shutdown(Duration::from_secs(1)).await;
}
