//! Test support: backends that can be told to fail, hang or slow down at run
//! time, sluice started from a TOML string, and small HTTP clients. Every
//! listener is on 127.0.0.1 port 0; every wait is bounded.
#![allow(dead_code)]

pub mod tls;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use sluice::config::Config;
use sluice::Sluice;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Fails the test if `fut` takes longer than `secs`.
pub async fn within<T>(secs: u64, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("test step did not finish within {secs} s"),
    }
}

/// Polls `check` until it is true or `secs` pass.
pub async fn eventually(secs: u64, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What a test backend saw of one request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub version: http::Version,
    pub headers: HeaderMap,
}

/// A backend whose behaviour can change while a test runs.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    status: AtomicU16,
    health_status: AtomicU16,
    health_hang: AtomicBool,
    delay_ms: AtomicU64,
    hang: AtomicBool,
    requests: AtomicUsize,
    checks: AtomicUsize,
    connections: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
}

impl Backend {
    /// Starts a backend answering 200 with its name as the body, and these
    /// special paths: `/echo` streams the request body back; `/bytes/N`
    /// streams N bytes.
    pub async fn start(name: &str) -> Arc<Backend> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b = Arc::new(Backend {
            name: name.to_string(),
            addr: listener.local_addr().unwrap(),
            status: AtomicU16::new(200),
            health_status: AtomicU16::new(200),
            health_hang: AtomicBool::new(false),
            delay_ms: AtomicU64::new(0),
            hang: AtomicBool::new(false),
            requests: AtomicUsize::new(0),
            checks: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
        });
        let b2 = b.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                b2.connections.fetch_add(1, Ordering::SeqCst);
                let b3 = b2.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| b3.clone().answer(req));
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        b
    }

    pub fn set_status(&self, s: u16) {
        self.status.store(s, Ordering::SeqCst);
    }
    /// The status `/healthz` answers (health checks), apart from traffic.
    pub fn set_health_status(&self, s: u16) {
        self.health_status.store(s, Ordering::SeqCst);
    }
    /// Makes `/healthz` never answer (until set back).
    pub fn set_health_hang(&self, h: bool) {
        self.health_hang.store(h, Ordering::SeqCst);
    }
    pub fn set_delay(&self, d: Duration) {
        self.delay_ms.store(d.as_millis() as u64, Ordering::SeqCst);
    }
    pub fn set_hang(&self, h: bool) {
        self.hang.store(h, Ordering::SeqCst);
    }
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
    /// Health checks received (not counted in `requests`).
    pub fn checks(&self) -> usize {
        self.checks.load(Ordering::SeqCst)
    }
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the backend saw no request")
    }

    async fn answer(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<http_body_util::combinators::BoxBody<Bytes, hyper::Error>>, Infallible>
    {
        if req.uri().path() == "/healthz" {
            self.checks.fetch_add(1, Ordering::SeqCst);
            while self.health_hang.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let mut resp = Response::new(
                Full::new(Bytes::from_static(b"ok"))
                    .map_err(|never| match never {})
                    .boxed(),
            );
            *resp.status_mut() =
                StatusCode::from_u16(self.health_status.load(Ordering::SeqCst)).unwrap();
            return Ok(resp);
        }
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push(Seen {
            method: req.method().to_string(),
            uri: req.uri().to_string(),
            version: req.version(),
            headers: req.headers().clone(),
        });
        while self.hang.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let path = req.uri().path().to_string();
        let body = if path == "/echo" {
            req.into_body().boxed()
        } else if let Some(n) = path.strip_prefix("/bytes/") {
            let total: u64 = n.parse().unwrap_or(0);
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            Repeat { left: total, chunk }.boxed()
        } else {
            Full::new(Bytes::from(self.name.clone()))
                .map_err(|never| match never {})
                .boxed()
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = StatusCode::from_u16(self.status.load(Ordering::SeqCst)).unwrap();
        resp.headers_mut()
            .insert("x-backend", self.name.parse().unwrap());
        resp.headers_mut().insert(
            "connection",
            "keep-alive, x-backend-secret".parse().unwrap(),
        );
        resp.headers_mut()
            .insert("x-backend-secret", "s".parse().unwrap());
        Ok(resp)
    }
}

/// A body of `total` bytes produced chunk by chunk, never held whole.
pub struct Repeat {
    pub left: u64,
    pub chunk: Bytes,
}

impl http_body::Body for Repeat {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len() as u64);
        self.left -= n;
        let data = self.chunk.slice(..n as usize);
        std::task::Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }
}

/// Starts sluice from a TOML string.
pub async fn sluice(toml: &str) -> Sluice {
    let config = Config::parse(toml).unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
    Sluice::start(config).await.expect("sluice starts")
}

/// The address of sluice's listener `name`.
pub async fn addr(s: &Sluice, name: &str) -> SocketAddr {
    s.listener_addr(name).await.expect("listener exists")
}

/// A minimal config: one listener "public", one route to pool "p" with the
/// given strategy and backends (`addr` or `addr weight`), plus `extra` TOML
/// appended to the pool table.
pub fn config(strategy: &str, backends: &[(&Backend, u32)], extra: &str) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|(b, w)| format!("{{ addr = \"{}\", weight = {w} }}", b.addr))
        .collect();
    format!(
        "[log]\naccess_log = false\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n[[route]]\npool = \"p\"\n[pool.p]\nstrategy = \"{strategy}\"\nbackends = [{}]\n{extra}\n",
        list.join(", ")
    )
}

pub type TestClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn h2c_client() -> TestClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A response read whole.
pub struct Got {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
    pub version: http::Version,
}

impl Got {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

pub async fn send(c: &TestClient, req: Request<Full<Bytes>>) -> Got {
    let resp = within(30, c.request(req)).await.expect("request sent");
    let (parts, body) = resp.into_parts();
    let bytes = within(30, body.collect())
        .await
        .expect("body read")
        .to_bytes();
    Got {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        version: parts.version,
    }
}

/// GET `path` from `addr` with a Host header.
pub async fn get(c: &TestClient, addr: SocketAddr, host: &str, path: &str) -> Got {
    let req = Request::get(format!("http://{addr}{path}"))
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(c, req).await
}

/// The status of the first response in raw response text, or 0.
pub fn status_of(resp: &str) -> u16 {
    resp.strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// `sluice_backend_in_flight` of one backend, from the admin listener.
pub async fn backend_in_flight(admin: SocketAddr, backend: SocketAddr) -> f64 {
    let text = get(&client(), admin, "x", "/metrics").await.body;
    let needle = format!("backend=\"{backend}\"");
    text.lines()
        .find(|l| l.starts_with("sluice_backend_in_flight{") && l.contains(&needle))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no in_flight series for {backend}:\n{text}"))
}

/// Writes raw bytes and reads until the server closes (or 10 s pass).
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    read_to_close(&mut s, 10).await
}

pub async fn read_to_close(s: &mut TcpStream, secs: u64) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(secs), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// RSS of a process in bytes.
pub fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

/// A backend that speaks raw TCP: `handler` gets each accepted connection.
pub async fn raw_backend<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(handler(stream));
        }
    });
    addr
}

/// An address nothing listens on (bound, then released).
pub async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

/// A free port on 127.0.0.1 (bound, then released; for tests that must
/// write a fixed port into a config file for the binary).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The sluice binary as a child process, killed when dropped.
pub struct Child(pub std::process::Child);

impl Child {
    pub fn spawn(args: &[&str]) -> Child {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("sluice binary starts");
        Child(child)
    }

    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &self.0.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits up to `secs` for the process to exit and returns its code.
    pub async fn wait_exit(&mut self, secs: u64) -> Option<i32> {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "sluice did not exit within {secs} s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `addr` until a GET answers (any status), up to `secs`.
pub async fn wait_until_serving(addr: SocketAddr, path: &str, secs: u64) -> Got {
    let c = client();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let req = Request::get(format!("http://{addr}{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        if let Ok(Ok(resp)) = tokio::time::timeout(Duration::from_secs(2), c.request(req)).await {
            let (parts, body) = resp.into_parts();
            let bytes = within(10, body.collect()).await.unwrap().to_bytes();
            return Got {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body: String::from_utf8_lossy(&bytes).into_owned(),
                version: parts.version,
            };
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{addr} not serving within {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits up to `secs` until something accepts connections on 127.0.0.1:`port`
/// (a helper process the test started).
pub async fn wait_port(port: u16, secs: u64) {
    within(secs, async {
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Writes `text` to a fresh file in a per-test temporary directory.
pub fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sluice-test-{}-{}",
        std::process::id(),
        fastrand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn fastrand_suffix() -> u64 {
    use std::sync::atomic::AtomicU64;
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}
