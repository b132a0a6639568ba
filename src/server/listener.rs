//! Listening sockets and their accept loops.
//!
//! With one worker, a listener is one socket and one accept loop. With N
//! workers (the nginx way, `worker_threads` > 1), it is N sockets bound to
//! the same address with SO_REUSEPORT, one per worker, each with its own
//! accept loop on that worker's single-threaded runtime: the kernel spreads
//! new connections over them, and a connection lives its whole life on the
//! worker that accepted it. `max_connections` is one semaphore shared by
//! the N loops, so the limit holds for the listener as a whole.
//!
//! The accept loop follows hyper-util's graceful-server example: accept
//! errors back off and continue (running out of file descriptors must not
//! end the listener), and stopping a listener closes its sockets first,
//! then drains: it waits until every connection has given back its permit.

use crate::snapshot::Shared;
use crate::workers::{Counter, Workers};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

fn socket(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// Binds a listening socket the way a server should: SO_REUSEADDR (a
/// restart does not wait out TIME_WAIT), non-blocking, a deep backlog
/// (where connections over max_connections wait).
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    socket(addr, false)
}

/// Binds one more SO_REUSEPORT socket beside others at `addr`.
pub fn bind_reuse_port(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    socket(addr, true)
}

/// Binds `n` sockets to `addr` (one per worker; SO_REUSEPORT when more
/// than one). With port 0, the others take the port the first one got.
pub fn bind_workers(addr: SocketAddr, n: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    if n <= 1 {
        return Ok(vec![socket(addr, false)?]);
    }
    let first = socket(addr, true)?;
    let actual = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..n {
        all.push(socket(actual, true)?);
    }
    Ok(all)
}

/// A running listener.
pub struct Listener {
    /// The name it serves under; a reload may rename it in place (the
    /// socket is kept by its bind address).
    name: Arc<RwLock<Arc<str>>>,
    /// The address as configured (port 0 stays 0 here).
    pub bind: SocketAddr,
    /// The address actually bound.
    pub local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    limit: Arc<Semaphore>,
    max_connections: usize,
    /// Copies of the listening sockets (the same kernel sockets), for a
    /// binary upgrade to hand over; dropped first thing on drain.
    handover: Vec<std::net::TcpListener>,
}

impl Listener {
    /// Starts accepting on already bound sockets, one per worker (in
    /// order).
    pub fn spawn(
        name: &str,
        bind: SocketAddr,
        sockets: Vec<std::net::TcpListener>,
        workers: &Workers,
        shared: Arc<Shared>,
    ) -> std::io::Result<Listener> {
        let local_addr = match sockets.first() {
            Some(s) => s.local_addr()?,
            None => return Err(std::io::ErrorKind::InvalidInput.into()),
        };
        let (stop, stopped) = watch::channel(false);
        let name_arc: Arc<RwLock<Arc<str>>> = Arc::new(RwLock::new(name.into()));
        let max_connections = shared.snapshot().listener(name).config.max_connections;
        let limit = Arc::new(Semaphore::new(max_connections));
        let mut tasks = Vec::new();
        let n = workers.len().max(1);
        let handover = sockets
            .iter()
            .map(|s| s.try_clone())
            .collect::<std::io::Result<Vec<_>>>()?;
        for (i, socket) in sockets.into_iter().enumerate() {
            let worker = &workers.handles()[i % n];
            // Registered with the worker's own I/O driver.
            let listener = {
                let _in = worker.enter();
                TcpListener::from_std(socket)?
            };
            tasks.push(worker.spawn(serve_listener(
                listener,
                name_arc.clone(),
                shared.clone(),
                stopped.clone(),
                limit.clone(),
                workers.counter(i % n),
            )));
        }
        Ok(Listener {
            name: name_arc,
            bind,
            local_addr,
            stop,
            tasks,
            limit,
            max_connections,
            handover,
        })
    }

    /// Applies a reloaded `max_connections`: more places at once; fewer as
    /// connections above the new limit end (none is closed for it).
    pub fn set_max_connections(&mut self, max: usize) {
        let old = self.max_connections;
        if max > old {
            self.limit.add_permits(max - old);
        } else if max < old {
            use std::future::Future;
            use std::task::{Context, Poll, Waker};
            let fewer = u32::try_from(old - max).unwrap_or(u32::MAX);
            let mut taking = Box::pin(self.limit.clone().acquire_many_owned(fewer));
            // Polled once here: the semaphore serves waiters in order, so
            // the places this takes back come before any connection that
            // arrives after the reload (a task spawned to wait could start
            // after such a connection and lose the race to it).
            match taking
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
            {
                Poll::Ready(Ok(p)) => p.forget(),
                Poll::Ready(Err(_)) => {}
                Poll::Pending => {
                    tokio::spawn(async move {
                        if let Ok(p) = taking.await {
                            p.forget();
                        }
                    });
                }
            }
        }
        self.max_connections = max;
    }

    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// The listening sockets, for a binary upgrade.
    pub fn sockets(&self) -> &[std::net::TcpListener] {
        &self.handover
    }

    /// The name it serves under now.
    pub fn name(&self) -> Arc<str> {
        self.name
            .read()
            .map_or_else(|p| p.into_inner().clone(), |n| n.clone())
    }

    /// Serves new connections under `name` (a renamed listener; connections
    /// already open keep theirs).
    pub fn rename(&self, name: &str) {
        if let Ok(mut n) = self.name.write() {
            *n = name.into();
        }
    }

    /// Stops accepting (the sockets close at once) and drains: idle
    /// connections close, requests in flight finish. Resolves when every
    /// connection is gone.
    pub async fn drain(mut self) {
        // No copy may keep a socket open that nothing accepts on.
        self.handover.clear();
        self.stop.send_replace(true);
        let name = self.name();
        for t in self.tasks {
            if let Err(e) = t.await {
                tracing::error!(listener = %name, error = %e, "listener task failed");
            }
        }
        // Every connection holds a permit until it ends: all permits back
        // means all connections drained. (max_connections is at most 10
        // million.)
        let all = u32::try_from(self.max_connections).unwrap_or(u32::MAX);
        let _ = self.limit.acquire_many(all).await;
    }
}

/// Accepts on `listener` until `stop` turns true, handing each connection
/// to `handle`, which may wait (for a place under a limit) and says whether
/// to go on. The one accept loop of sluice: listeners and the admin
/// listener both run it. Accept errors of one connection are skipped;
/// running out of resources (EMFILE, ENFILE, ENOBUFS) backs off, doubling
/// from 5 ms to 1 s, and never ends the loop.
pub async fn accept_loop<H, F>(
    listener: TcpListener,
    label: &str,
    mut stop: watch::Receiver<bool>,
    mut handle: H,
) where
    H: FnMut(TcpStream, SocketAddr) -> F,
    F: std::future::Future<Output = bool>,
{
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.changed() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                if !handle(stream, peer).await {
                    break;
                }
            }
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                tracing::warn!(listener = %label, error = %e, backoff_ms = backoff.as_millis() as u64, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// A listener's loop: each connection waits for a place under
/// `max_connections`, then gets its task.
async fn serve_listener(
    listener: TcpListener,
    name: Arc<RwLock<Arc<str>>>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    limit: Arc<Semaphore>,
    accepted_here: Counter,
) {
    let label = name
        .read()
        .map_or_else(|p| p.into_inner().clone(), |n| n.clone());
    let stop_each = stop.clone();
    accept_loop(listener, &label, stop, |stream, peer| {
        accepted_here.add();
        let (name, shared, limit, mut stop) = (
            name.read()
                .map_or_else(|p| p.into_inner().clone(), |n| n.clone()),
            shared.clone(),
            limit.clone(),
            stop_each.clone(),
        );
        async move {
            // Over max_connections, the connection waits here for a place
            // (and the next ones in the kernel's backlog): with several
            // workers, a loop that waited before accepting would hold back
            // its own socket's queue while another worker's connection
            // freed the place.
            let permit = match limit.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => tokio::select! {
                    biased;
                    _ = stop.changed() => return false,
                    permit = limit.acquire_owned() => match permit {
                        Ok(p) => p,
                        Err(_) => return false,
                    },
                },
            };
            tokio::spawn(super::serve(stream, peer, name, shared, stop, permit));
            true
        }
    })
    .await;
}

/// Errors of one connection that died in the backlog; the listener is fine.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}
