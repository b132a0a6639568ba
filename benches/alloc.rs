//! Allocations per proxied request, counted by a counting global
//! allocator: sluice runs on its own thread (one current-thread runtime, as
//! with `worker_threads = 1`), and only that thread's allocations count.
//! The backend and the client are plain blocking sockets on other threads.
//!
//!   cargo bench --bench alloc
//!
//! Prints allocations (and bytes) per small keep-alive request, per 16 KiB
//! response, and per request on a new connection.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTED.with(|c| c.get()) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTED.with(|c| c.get()) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A keep-alive backend answering every request with `body`.
fn backend(body: &'static [u8]) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncontent-type: text/plain\r\n\r\n",
        body.len()
    );
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let head = head.clone();
            std::thread::spawn(move || {
                let _ = s.set_nodelay(true);
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                loop {
                    let n = match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    got.extend_from_slice(&buf[..n]);
                    while let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        got.drain(..end + 4);
                        let mut resp = head.as_bytes().to_vec();
                        resp.extend_from_slice(body);
                        if s.write_all(&resp).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) {
    buf.clear();
    let mut chunk = [0u8; 65536];
    loop {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "sluice closed the connection");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return;
            }
        }
    }
}

fn sluice(backends: &[SocketAddr]) -> SocketAddr {
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("{{ addr = \"{b}\" }}"))
        .collect();
    let toml = format!(
        "[log]\naccess_log = false\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n[[route]]\npool = \"p\"\n[pool.p]\nstrategy = \"round_robin\"\nbackends = [{}]\n",
        list.join(", ")
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        COUNTED.with(|c| c.set(true));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let config = sluice::config::Config::parse(&toml).unwrap();
            let s = sluice::Sluice::start(config).await.unwrap();
            tx.send(s.listener_addr("public").await.unwrap()).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
}

fn measure(name: &str, n: u64, mut one: impl FnMut()) {
    for _ in 0..200 {
        one();
    }
    let (a0, b0) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    for _ in 0..n {
        one();
    }
    let (a1, b1) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    println!(
        "{name:<40} {:>6.2} allocations/request {:>9.0} bytes/request",
        (a1 - a0) as f64 / n as f64,
        (b1 - b0) as f64 / n as f64
    );
}

fn main() {
    let small = backend(b"ok");
    let big = backend(Box::leak(vec![b'x'; 16384].into_boxed_slice()));
    let a = sluice(&[small]);
    let b = sluice(&[big]);
    let mut buf = Vec::new();
    let mut c = TcpStream::connect(a).unwrap();
    c.set_nodelay(true).unwrap();
    measure("small keep-alive request", 5000, || {
        c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        read_response(&mut c, &mut buf);
    });
    let mut c = TcpStream::connect(b).unwrap();
    c.set_nodelay(true).unwrap();
    measure("16 KiB keep-alive response", 5000, || {
        c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        read_response(&mut c, &mut buf);
    });
    let mut idle = Vec::new();
    measure("silent connection (accepted, nothing sent)", 1000, || {
        idle.push(TcpStream::connect(a).unwrap());
        std::thread::sleep(std::time::Duration::from_micros(200));
    });
    drop(idle);
    measure("new connection per request", 1000, || {
        let mut c = TcpStream::connect(a).unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .unwrap();
        read_response(&mut c, &mut buf);
    });
}
