//! Backends protected and failures hidden: a cap on connections per
//! backend with a bounded queue, and a backend killed under load that costs
//! clients nothing.

mod support;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// One GET on its own connection; the raw answer.
async fn get_raw(a: SocketAddr) -> String {
    let mut s = TcpStream::connect(a).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    read_to_close(&mut s, 20).await
}

fn metric(text: &str, name: &str, backend: SocketAddr) -> f64 {
    let needle = format!("backend=\"{backend}\"");
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(&needle))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_past_max_connections_queues_then_gets_503() {
    let b = Backend::start("slow").await;
    b.set_delay(Duration::from_millis(1500));
    let s = sluice(&format!(
        "[log]\naccess_log = false\n[admin]\nbind = \"127.0.0.1:0\"\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n[[route]]\npool = \"p\"\n[pool.p]\nmax_connections = 2\nqueue_timeout = \"500ms\"\nbackends = [{{ addr = \"{}\" }}]\n",
        b.addr
    ))
    .await;
    let a = addr(&s, "public").await;
    let admin = s.admin_addr().await.unwrap();
    let burst: Vec<_> = (0..5).map(|_| tokio::spawn(get_raw(a))).collect();
    // Two go to the backend; three wait, and show as waiting.
    let mut seen = (0.0, String::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        let m = get(&client(), admin, "x", "/metrics").await.body;
        let pools = get(&client(), admin, "x", "/api/v1/pools").await.body;
        seen = (metric(&m, "sluice_backend_queue_length", b.addr), pools);
        if seen.0 == 3.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen.0, 3.0, "queue length never reached 3");
    assert!(seen.1.contains("\"queue\":3"), "{}", seen.1);
    assert!(seen.1.contains("\"connections\":2"), "{}", seen.1);
    let mut statuses = Vec::new();
    for r in burst {
        let resp = within(20, r).await.unwrap();
        if status_of(&resp) == 503 {
            assert!(resp.contains("retry-after: 1\r\n"), "{resp}");
            assert!(resp.contains("came free in time"), "{resp}");
        }
        statuses.push(status_of(&resp));
    }
    statuses.sort();
    assert_eq!(statuses, [200, 200, 503, 503, 503]);
    assert_eq!(b.connections(), 2, "never more than max_connections");
    // The cap frees up: the next request is served.
    b.set_delay(Duration::ZERO);
    assert_eq!(status_of(&get_raw(a).await), 200);
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_request_takes_the_connection_that_comes_free() {
    let b = Backend::start("b").await;
    b.set_delay(Duration::from_millis(150));
    let s = sluice(&format!(
        "[log]\naccess_log = false\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n[[route]]\npool = \"p\"\n[pool.p]\nmax_connections = 1\nqueue_timeout = \"10s\"\nbackends = [{{ addr = \"{}\" }}]\n",
        b.addr
    ))
    .await;
    let a = addr(&s, "public").await;
    let burst: Vec<_> = (0..4).map(|_| tokio::spawn(get_raw(a))).collect();
    for r in burst {
        assert_eq!(status_of(&within(20, r).await.unwrap()), 200);
    }
    assert_eq!(b.connections(), 1, "one connection, used in turn");
    s.shutdown(Duration::from_secs(1)).await;
}

/// A backend that can be killed: its listener closes and every connection
/// it holds is dropped at once, as when its process dies.
struct Killable {
    addr: SocketAddr,
    tasks: std::sync::Mutex<tokio::task::JoinSet<()>>,
    served: Arc<AtomicUsize>,
}

impl Killable {
    async fn start() -> Arc<Killable> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(AtomicUsize::new(0));
        let k = Arc::new(Killable {
            addr,
            tasks: std::sync::Mutex::new(tokio::task::JoinSet::new()),
            served: served.clone(),
        });
        let k2 = k.clone();
        k.tasks.lock().unwrap().spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let served = served.clone();
                let svc = service_fn(move |_req| {
                    served.fetch_add(1, Ordering::SeqCst);
                    async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    }
                });
                k2.tasks.lock().unwrap().spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        k
    }

    fn kill(&self) {
        self.tasks.lock().unwrap().abort_all();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_killed_under_load_costs_clients_nothing() {
    let backends = [
        Killable::start().await,
        Killable::start().await,
        Killable::start().await,
    ];
    // No health check, no breaker: only the retry rules hide the dead one.
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("{{ addr = \"{}\" }}", b.addr))
        .collect();
    let s = sluice(&format!(
        "[log]\naccess_log = false\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n[[route]]\npool = \"p\"\n[pool.p]\nstrategy = \"round_robin\"\nbackends = [{}]\n[pool.p.retry]\n",
        list.join(", ")
    ))
    .await;
    let a = addr(&s, "public").await;
    let errors = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (errors, ok, stop) = (errors.clone(), ok.clone(), stop.clone());
            tokio::spawn(async move {
                let c = client();
                while !stop.load(Ordering::SeqCst) {
                    let got = get(&c, a, "a", "/").await;
                    if got.status == 200 {
                        ok.fetch_add(1, Ordering::SeqCst);
                    } else {
                        errors.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    eventually(10, || ok.load(Ordering::SeqCst) > 500).await;
    backends[1].kill();
    let at_kill = ok.load(Ordering::SeqCst);
    eventually(20, || ok.load(Ordering::SeqCst) > at_kill + 2000).await;
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        within(20, c).await.unwrap();
    }
    assert_eq!(errors.load(Ordering::SeqCst), 0, "clients saw errors");
    let dead = backends[1].served.load(Ordering::SeqCst);
    assert!(dead > 0, "the killed backend served before");
    let live: usize = [0, 2]
        .iter()
        .map(|&i| backends[i].served.load(Ordering::SeqCst))
        .sum();
    assert!(live > 2000, "the others served the rest: {live}");
    s.shutdown(Duration::from_secs(1)).await;
}
