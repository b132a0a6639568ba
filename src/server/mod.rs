//! Listeners: bind, accept, and hand each client connection to the HTTP/1
//! engine (`http1`), or to hyper's HTTP/2 (`h2`) when ALPN or the client's
//! preface says so.
//!
//! The accept loop follows hyper-util's graceful-server example: accept
//! errors back off and continue (running out of file descriptors must not
//! end the listener), and stopping a listener closes its socket first, then
//! drains: it waits until every connection has given back its
//! `max_connections` permit.
//!
//! An idle HTTP/1 connection parks: the engine gives back its buffers and
//! `serve_http1` waits on the bare socket until the client sends again.

pub mod h2;
mod h2_forward;
mod listener;

pub use listener::{accept_loop, bind, bind_reuse_port, bind_workers, Listener};

use crate::http1::conn::{self as h1, Ended, Limits};
use crate::http1::io::Stream;
use crate::proxy::Client;
use crate::snapshot::Shared;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit};

async fn serve(
    mut stream: TcpStream,
    mut peer: SocketAddr,
    listener: Arc<str>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    // Small proxied responses must not wait for Nagle.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "set_nodelay failed");
    }
    let (config, tls) = {
        let snap = shared.snapshot();
        let view = snap.listener(&listener);
        (
            view.config.clone(),
            view.tls.as_ref().map(|t| t.server.clone()),
        )
    };
    // Behind an L4 balancer: the PROXY header names the client, within the
    // time a request head has; a connection without one is closed unanswered.
    if config.proxy_protocol {
        // Boxed: its state is not part of every idle connection's task.
        let read = Box::pin(crate::proxy_protocol::read_header(
            &mut stream,
            config.header_read_timeout,
        ));
        match read.await {
            Ok(Some(source)) => peer = source,
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(peer = %peer, error = ?e, "no valid PROXY protocol header; closed");
                return;
            }
        }
    }
    let active = shared
        .metrics
        .connections_active
        .with_label_values(&[&*listener]);
    active.inc();
    let client = Arc::new(Client {
        listener,
        peer,
        local: stream.local_addr().unwrap_or(peer),
        tls: tls.is_some(),
        shared,
    });
    match tls {
        None => serve_http1(stream, client, &config, stop).await,
        // Boxed: this task's own size is what an idle plaintext
        // connection costs.
        Some(tls) => Box::pin(serve_tls(stream, tls, client, &config, stop)).await,
    }
    active.dec();
}

async fn serve_tls(
    stream: TcpStream,
    tls: Arc<rustls::ServerConfig>,
    client: Arc<Client>,
    config: &crate::config::ListenerConfig,
    stop: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    // A handshake must finish within header_read_timeout, so half-open
    // handshakes cannot pile up (the slowloris of TLS).
    match tokio::time::timeout(config.header_read_timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            let alpn = stream.get_ref().1.alpn_protocol();
            if alpn == Some(crate::tls::ACME_TLS_ALPN) {
                // An ACME validator checked the challenge certificate in the
                // handshake; nothing follows (RFC 8737).
                return;
            }
            if alpn == Some(b"h2") {
                h2::serve(stream, client, config, stop).await;
            } else {
                serve_http1(stream, client, config, stop).await;
            }
        }
        Ok(Err(e)) => tracing::debug!(peer = %client.peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(peer = %client.peer, "TLS handshake timed out"),
    }
}

/// Serves one client connection given as any byte stream, as listener
/// `listener` would (without TLS). For fuzzing the request path over an
/// in-memory stream; the listeners use `serve`.
pub async fn serve_stream<T: Stream>(
    stream: T,
    peer: SocketAddr,
    listener: &str,
    shared: Arc<Shared>,
) {
    let config = shared.snapshot().listener(listener).config.clone();
    let client = Arc::new(Client {
        listener: listener.into(),
        peer,
        local: peer,
        tls: false,
        shared,
    });
    // Never stopped: the sender lives as long as the connection.
    let (_never, stop) = watch::channel(false);
    serve_http1(stream, client, &config, stop).await;
}

fn limits(config: &crate::config::ListenerConfig) -> Limits {
    Limits {
        header_read_timeout: config.header_read_timeout,
        idle_timeout: config.idle_timeout,
        max_header_bytes: config.max_header_bytes,
    }
}

/// Serves an HTTP/1 connection with the engine while it is busy, and
/// waits on the bare socket, holding none of the engine's state, while it
/// idles (parked): before its first request (until header_read_timeout,
/// when the engine answers 408) and between requests (until idle_timeout).
async fn serve_http1<S: Stream>(
    mut stream: S,
    client: Arc<Client>,
    config: &crate::config::ListenerConfig,
    mut stop: watch::Receiver<bool>,
) {
    let accepted = tokio::time::Instant::now();
    // Why the connection is parked: None before its first request, else
    // since when it has been idle. Not parked at first: the first request
    // has usually arrived with the connection.
    let mut parked: Option<Option<tokio::time::Instant>> = None;
    loop {
        if let (Some(idle), Some(socket)) = (parked, stream.socket()) {
            let until = match idle {
                None => accepted + config.header_read_timeout,
                Some(since) => since + config.idle_timeout,
            };
            let readable = tokio::select! {
                biased;
                // Draining: an idle connection closes once it has stayed
                // idle for DRAIN_IDLE; a request sent meanwhile is answered
                // (with Connection: close).
                _ = stopped_for(&mut stop, DRAIN_IDLE) => return,
                // Idle too long: close. No head in time: the engine answers
                // 408 (its head timer has run out).
                _ = tokio::time::sleep_until(until) => if idle.is_some() {
                    return;
                } else {
                    false
                },
                readable = socket.readable() => if readable.is_err() {
                    return;
                } else {
                    true
                },
            };
            // A client that closed its idle connection needs no engine.
            if readable && matches!(socket.peek(&mut [0u8; 1]).await, Ok(0) | Err(_)) {
                return;
            }
        }
        // Boxed: a parked connection's task keeps only a pointer's worth of
        // the engine, not its state.
        let ended = Box::pin(h1::serve(
            stream,
            client.clone(),
            limits(config),
            stop.clone(),
            accepted,
            parked.flatten(),
        ))
        .await;
        match ended {
            Ended::Closed => return,
            Ended::H2 { stream, read } => {
                let prefixed = Prefixed {
                    read: std::io::Cursor::new(read),
                    stream,
                };
                return Box::pin(h2::serve(prefixed, client, config, stop)).await;
            }
            Ended::Parked {
                stream: s,
                idle_since,
            } => {
                stream = s;
                parked = Some(idle_since);
            }
        }
    }
}

/// How long a draining listener's idle keep-alive connections stay open
/// for a request already on its way. Closing an idle connection races with
/// a client that sends on it at that moment (nginx and HAProxy lose such
/// requests on every reload); answering whatever arrives within this
/// window with `Connection: close`, and closing only what stays idle,
/// leaves the race to clients that were idle for the whole window.
pub const DRAIN_IDLE: std::time::Duration = std::time::Duration::from_millis(500);

/// Resolves `after` the listener stops.
async fn stopped_for(stop: &mut watch::Receiver<bool>, after: std::time::Duration) {
    stopped(stop).await;
    tokio::time::sleep(after).await;
}

/// Resolves when the listener stops (or is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// A stream whose first bytes were read already (the HTTP/2 preface the
/// engine looked at).
struct Prefixed<S> {
    read: std::io::Cursor<Vec<u8>>,
    stream: S,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Prefixed<S> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let pos = this.read.position() as usize;
        let left = &this.read.get_ref()[pos.min(this.read.get_ref().len())..];
        if !left.is_empty() {
            let n = left.len().min(buf.remaining());
            buf.put_slice(&left[..n]);
            this.read.set_position((pos + n) as u64);
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_idle_connection_task_stays_small() {
        fn size<F: std::future::Future>(_: &F) -> usize {
            std::mem::size_of::<F>()
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let config = crate::config::Config::parse(
                "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n[[route]]\npool = \"p\"\n[pool.p]\nbackends = [{ addr = \"127.0.0.1:1\" }]\n",
            )
            .unwrap();
            let metrics = crate::metrics::Metrics::default();
            let snap = crate::snapshot::Snapshot::build(config, Default::default(), None, &metrics);
            let shared = std::sync::Arc::new(crate::snapshot::Shared::new(snap, metrics));
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let s = tokio::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            let (_tx, rx) = tokio::sync::watch::channel(false);
            let permit = std::sync::Arc::new(tokio::sync::Semaphore::new(1)).acquire_owned().await.unwrap();
            let client = std::sync::Arc::new(crate::proxy::Client {
                listener: "l".into(),
                peer: ([127, 0, 0, 1], 1).into(),
                local: ([127, 0, 0, 1], 2).into(),
                tls: false,
                shared: shared.clone(),
            });
            let config = shared.snapshot().listener("l").config.clone();
            let s2 = tokio::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            let h = super::serve_http1(s2, client, &config, rx.clone());
            // What a parked connection's task holds, besides its socket.
            assert!(size(&h) <= 768, "serve_http1 future: {} bytes", size(&h));
            let f = super::serve(s, ([127, 0, 0, 1], 1).into(), "l".into(), shared, rx, permit);
            // (1,024 before the PROXY protocol step, whose boxed reader adds
            // a pointer's worth to every connection.)
            assert!(size(&f) <= 1056, "connection task: {} bytes", size(&f));
        });
    }
}
