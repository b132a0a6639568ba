//! Any bytes from a client, through the whole request path over an
//! in-memory stream: framing, hyper, routing, forwarding to a real backend
//! on 127.0.0.1, and back. Whatever comes in, sluice answers or closes, in
//! bounded time, without a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct World {
    rt: tokio::runtime::Runtime,
    shared: Arc<sluice::snapshot::Shared>,
    _sluice: sluice::Sluice,
}

/// A backend that answers every connection's first request with 200 and
/// closes: enough for the proxy to forward to.
async fn backend() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { continue };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await;
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
            });
        }
    });
    a
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (sluice, shared) = rt.block_on(async {
            let b = backend().await;
            let toml = format!(
                "[log]\naccess_log = false\n[[listener]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\nheader_read_timeout = \"50ms\"\nidle_timeout = \"50ms\"\nmax_header_bytes = 4096\n[[route]]\npool = \"p\"\n[pool.p]\nrequest_timeout = \"200ms\"\nbackends = [{{ addr = \"{b}\" }}]\n"
            );
            let config = sluice::config::Config::parse(&toml).unwrap();
            let s = sluice::Sluice::start(config).await.unwrap();
            let shared = s.shared().clone();
            (s, shared)
        });
        World { rt, shared, _sluice: sluice }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    w.rt.block_on(async {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let peer = "127.0.0.1:40000".parse().unwrap();
        let conn = tokio::spawn(sluice::server::serve_stream(server, peer, "public", w.shared.clone()));
        let _ = client.write_all(data).await;
        // The client is done sending (so a lingering close ends at once).
        let _ = client.shutdown().await;
        let mut out = Vec::new();
        // Every connection ends: answered and closed, or timed out by
        // sluice's own limits (50 ms here), well within 5 s.
        let ended = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut out)).await;
        assert!(ended.is_ok(), "the connection neither answered nor closed");
        let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
    });
});
