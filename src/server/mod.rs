//! Listeners: bind, accept, and serve each client connection with hyper
//! (HTTP/1.1 with keep-alive and HTTP/2 by prior knowledge on one port).
//!
//! The accept loop follows hyper-util's graceful-server example: accept
//! errors back off and continue (running out of file descriptors must not
//! end the listener), every connection watches for graceful shutdown, and
//! stopping a listener closes its socket first, then drains: it waits until
//! every connection has given back its `max_connections` permit.
//!
//! A plaintext HTTP/1 connection idle for a moment is parked (see
//! `io::Parking`): hyper lets go of it and its buffers, and `serve` waits on
//! the bare socket until the client sends again.

pub mod framing;
pub mod io;

use crate::runtime::Shared;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

/// One client connection, as the request path and the I/O wrapper see it.
pub struct ConnInfo {
    pub listener: Arc<str>,
    pub peer: SocketAddr,
    pub tls: bool,
    pub shared: Arc<Shared>,
    in_progress: AtomicU32,
    /// Bumped whenever the last request in progress ends.
    idle_epoch: AtomicU64,
    /// The connection task's waker while its reader waits for a request to
    /// end: hyper may not poll the read side again by itself, and the idle
    /// timer has to be armed when the connection goes idle.
    idle_waker: Mutex<Option<Waker>>,
    /// Switched protocols (WebSocket): the bytes now belong to a tunnel.
    upgraded: AtomicBool,
    /// Why the framing layer refused the client's request, for the handler
    /// to answer (see `io`).
    rejection: Mutex<Option<framing::Reject>>,
}

impl ConnInfo {
    pub fn new(listener: Arc<str>, peer: SocketAddr, tls: bool, shared: Arc<Shared>) -> ConnInfo {
        ConnInfo {
            listener,
            peer,
            tls,
            shared,
            in_progress: AtomicU32::new(0),
            idle_epoch: AtomicU64::new(0),
            idle_waker: Mutex::new(None),
            upgraded: AtomicBool::new(false),
            rejection: Mutex::new(None),
        }
    }

    pub fn request_started(&self) {
        self.in_progress.fetch_add(1, Ordering::AcqRel);
    }

    pub fn request_finished(&self) {
        if self.in_progress.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle_epoch.fetch_add(1, Ordering::AcqRel);
            let waker = self.idle_waker.lock().map(|mut w| w.take()).unwrap_or(None);
            if let Some(w) = waker {
                w.wake();
            }
        }
    }

    /// Asks to be woken when the last request in progress ends.
    pub fn wake_when_idle(&self, waker: &Waker) {
        if let Ok(mut slot) = self.idle_waker.lock() {
            match slot.as_ref() {
                Some(w) if w.will_wake(waker) => {}
                _ => *slot = Some(waker.clone()),
            }
        }
    }

    pub fn set_upgraded(&self) {
        self.upgraded.store(true, Ordering::Release);
    }

    pub fn is_upgraded(&self) -> bool {
        self.upgraded.load(Ordering::Acquire)
    }

    pub fn requests_in_progress(&self) -> u32 {
        self.in_progress.load(Ordering::Acquire)
    }

    pub fn idle_epoch(&self) -> u64 {
        self.idle_epoch.load(Ordering::Acquire)
    }

    pub fn set_rejection(&self, r: framing::Reject) {
        if let Ok(mut slot) = self.rejection.lock() {
            slot.get_or_insert(r);
        }
    }

    pub fn rejection(&self) -> Option<framing::Reject> {
        self.rejection.lock().ok().and_then(|r| *r)
    }

    pub fn has_rejection(&self) -> bool {
        self.rejection().is_some()
    }
}

/// Binds a listening socket the way a server should: SO_REUSEADDR (a
/// restart does not wait out TIME_WAIT), non-blocking, a deep backlog (where
/// connections over max_connections wait).
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// A running listener.
pub struct Listener {
    pub name: String,
    /// The address as configured (port 0 stays 0 here).
    pub bind: SocketAddr,
    /// The address actually bound.
    pub local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Listener {
    /// Starts accepting on an already bound socket.
    pub fn spawn(
        name: &str,
        bind: SocketAddr,
        socket: std::net::TcpListener,
        shared: Arc<Shared>,
    ) -> std::io::Result<Listener> {
        let listener = TcpListener::from_std(socket)?;
        let local_addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let name_arc: Arc<str> = name.into();
        let task = tokio::spawn(accept_loop(listener, name_arc, shared, stopped));
        Ok(Listener {
            name: name.to_string(),
            bind,
            local_addr,
            stop,
            task,
        })
    }

    /// Stops accepting (the socket closes at once) and drains: idle
    /// connections close, requests in flight finish. Resolves when every
    /// connection is gone.
    pub async fn drain(self) {
        self.stop.send_replace(true);
        if let Err(e) = self.task.await {
            tracing::error!(listener = %self.name, error = %e, "listener task failed");
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    name: Arc<str>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let max_connections = shared.snapshot().listener(&name).config.max_connections;
    let limit = Arc::new(Semaphore::new(max_connections));
    let mut backoff = Duration::from_millis(5);
    loop {
        // Over max_connections, stop accepting: new connections wait in the
        // kernel's backlog instead of being accepted and starved.
        let permit = tokio::select! {
            biased;
            _ = stop.changed() => break,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            biased;
            _ = stop.changed() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                tokio::spawn(serve(
                    stream,
                    peer,
                    name.clone(),
                    shared.clone(),
                    stop.clone(),
                    permit,
                ));
            }
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                // EMFILE/ENFILE/ENOBUFS: wait for resources to free up,
                // never exit and never spin.
                tracing::warn!(listener = %name, error = %e, backoff_ms = backoff.as_millis() as u64, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    drop(listener);
    // Every connection holds a permit until it ends: all permits back means
    // all connections drained. (max_connections is at most 10 million.)
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    let _ = limit.acquire_many(all).await;
}

/// Errors of one connection that died in the backlog; the listener is fine.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<str>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    // Small proxied responses must not wait for Nagle.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "set_nodelay failed");
    }
    let config = shared.snapshot().listener(&listener).config.clone();
    let active = shared
        .metrics
        .connections_active
        .with_label_values(&[&*listener]);
    active.inc();
    match &config.tls {
        None => {
            let info = Arc::new(ConnInfo::new(listener, peer, false, shared));
            serve_parking(stream, info, &config, stop).await;
        }
        // Boxed, like hyper in `serve_parking`: this task's own size is
        // what an idle plaintext connection costs.
        Some(tls) => {
            Box::pin(serve_tls(
                stream, tls, peer, listener, shared, &config, stop,
            ))
            .await
        }
    }
    active.dec();
}

async fn serve_tls(
    stream: TcpStream,
    tls: &crate::tls::ListenerTls,
    peer: SocketAddr,
    listener: Arc<str>,
    shared: Arc<Shared>,
    config: &crate::config::ListenerConfig,
    stop: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
    // A handshake must finish within header_read_timeout, so half-open
    // handshakes cannot pile up (the slowloris of TLS).
    match tokio::time::timeout(config.header_read_timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            let info = Arc::new(ConnInfo::new(listener, peer, true, shared));
            let io = io::ConnIo::new(stream, info.clone(), limits(config), h2);
            serve_io(io, info, config, stop).await;
        }
        Ok(Err(e)) => {
            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
        }
        Err(_) => {
            tracing::debug!(peer = %peer, "TLS handshake timed out");
        }
    }
}

/// Serves one client connection given as any byte stream, as listener
/// `listener` would (without TLS). For fuzzing the request path over an
/// in-memory stream; the listeners use `serve`.
pub async fn serve_stream<T>(stream: T, peer: SocketAddr, listener: &str, shared: Arc<Shared>)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let config = shared.snapshot().listener(listener).config.clone();
    let info = Arc::new(ConnInfo::new(listener.into(), peer, false, shared));
    // Never stopped: the sender lives as long as the connection.
    let (_never, stop) = watch::channel(false);
    let io = io::ConnIo::new(stream, info.clone(), limits(&config), false);
    serve_io(io, info, &config, stop).await;
}

fn limits(config: &crate::config::ListenerConfig) -> io::Limits {
    io::Limits {
        header_read_timeout: config.header_read_timeout,
        idle_timeout: config.idle_timeout,
        max_header_bytes: config.max_header_bytes,
    }
}

/// Serves a plaintext connection: with hyper while it is busy, parked on the
/// bare socket while it idles (see `io::Parking`).
async fn serve_parking(
    mut stream: TcpStream,
    info: Arc<ConnInfo>,
    config: &crate::config::ListenerConfig,
    mut stop: watch::Receiver<bool>,
) {
    let parking = Arc::new(io::Parking::default());
    let mut resumed = None;
    loop {
        let io = io::ConnIo::new(stream, info.clone(), limits(config), false)
            .with_parking(parking.clone(), resumed);
        // Boxed: a parked connection's task keeps only a pointer's worth of
        // hyper, not hyper's connection state.
        Box::pin(serve_io(io, info.clone(), config, stop.clone())).await;
        let Some(parked) = parking.take() else {
            return;
        };
        stream = parked.stream;
        let idle_until = parked.idle_since + config.idle_timeout;
        tokio::select! {
            biased;
            // Draining: an idle connection closes at once.
            _ = stopped(&mut stop) => return,
            _ = tokio::time::sleep_until(idle_until) => return,
            readable = stream.readable() => if readable.is_err() {
                return;
            },
        }
        // A client that closed its idle connection needs no hyper.
        if matches!(stream.peek(&mut [0u8; 1]).await, Ok(0) | Err(_)) {
            return;
        }
        resumed = Some(parked.idle_since);
    }
}

/// Serves one connection's requests over a plain or TLS stream, until it
/// ends or parks.
async fn serve_io<T>(
    io: io::ConnIo<T>,
    info: Arc<ConnInfo>,
    config: &crate::config::ListenerConfig,
    mut stop: watch::Receiver<bool>,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let peer = info.peer;
    let builder = connection_builder(config);
    let service = service_fn(move |req| crate::proxy::handle(req, info.clone()));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        _ = stopped(&mut stop) => {
            // Graceful: the request in flight finishes, then the
            // connection closes (HTTP/2: GOAWAY).
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
    }
}

/// Resolves when the listener stops (or is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// hyper settings for client connections.
fn connection_builder(config: &crate::config::ListenerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // A client may shut its write side after its request and still
        // wait for the answer (`printf ... | nc`), as nginx and HAProxy allow.
        .half_close(true)
        // Head timing is ConnIo's job (it answers 408; hyper would just close).
        .header_read_timeout(None)
        // ConnIo enforces max_header_bytes exactly; hyper's buffer limit
        // (at least 8 KiB) only has to stay out of its way.
        .max_buf_size((config.max_header_bytes * 2).max(16 * 1024));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        // Flow control: 1 MiB per stream, 4 MiB per connection bounds what
        // one client can make sluice buffer; large enough for full speed
        // on a low-latency path.
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(4 << 20)
        .max_send_buf_size(1 << 20)
        .max_header_list_size(config.max_header_bytes as u32)
        // Rapid-reset guard: a client that opens and resets streams faster
        // than they are served is cut off.
        .max_pending_accept_reset_streams(Some(64))
        .max_local_error_reset_streams(Some(256));
    builder
}
