//! Request mirroring (`route.mirror`): a copy of the request goes to
//! another pool, fire-and-forget.
//!
//! The copy is the request head exactly as the primary backend gets it
//! (rewrites and header rules included) with `Connection: close`, and the
//! body when it was read whole (at most 64 KiB; larger bodies are not
//! mirrored). It runs in a task of its own on a fresh connection, so the
//! mirror's answer, slowness or failure never reaches the client: the
//! answer is read and thrown away, and the task ends by the mirror pool's
//! request_timeout at the latest. At most `MAX_IN_FLIGHT` copies are in
//! flight in the process: past that, copies are skipped rather than
//! queued, so a slow mirror pool cannot pile up memory.

use crate::snapshot::{Pool, Route};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Copies in flight in the whole process, at most.
pub const MAX_IN_FLIGHT: usize = 256;

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Holds one place among the copies in flight.
struct Place;

impl Place {
    fn take() -> Option<Place> {
        IN_FLIGHT
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_IN_FLIGHT).then_some(n + 1)
            })
            .ok()
            .map(|_| Place)
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether this request is one the route copies (its `percent` drawn).
pub fn wanted(route: &Route) -> bool {
    match (&route.mirror, &route.config.mirror) {
        (Some(_), Some(m)) => m.percent >= 100 || fastrand::u32(0..100) < m.percent,
        _ => false,
    }
}

/// Sends a copy of a request (`head` as written for the backend, ending
/// in an empty line; `body` framed as the head says) to the route's mirror
/// pool, without waiting for anything.
pub fn send(route: &Route, head: &[u8], body: &[u8]) {
    let Some(pool) = route.mirror.clone() else {
        return;
    };
    let Some(place) = Place::take() else {
        tracing::debug!(route = %route.name, "mirror skipped: too many copies in flight");
        return;
    };
    let Some(end) = head.len().checked_sub(2) else {
        return;
    };
    let mut copy = Vec::with_capacity(head.len() + 19 + body.len());
    copy.extend_from_slice(&head[..end]);
    copy.extend_from_slice(b"connection: close\r\n\r\n");
    copy.extend_from_slice(body);
    route.mirrored.inc();
    let name = route.name.clone();
    tokio::spawn(async move {
        let _place = place;
        let timeout = pool.config.request_timeout;
        match tokio::time::timeout(timeout, exchange(&pool, &copy)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(route = %name, error = %e, "mirror failed"),
            Err(_) => tracing::debug!(route = %name, "mirror timed out"),
        }
    });
}

/// One copy: pick a backend of the mirror pool, send, read the answer to
/// its end and drop it.
async fn exchange(pool: &Arc<Pool>, copy: &[u8]) -> std::io::Result<()> {
    let (i, _lease) = pool
        .pick(None, &[])
        .map_err(|_| std::io::Error::other("no backend in the mirror pool"))?;
    let addr = pool.addrs[i];
    // Outside the pool's connections (a copy never waits for a place), but
    // the way the pool speaks: TLS when it has `[pool.X.tls]`.
    let tls = pool.tls_target(i)?;
    let mut stream = pool.members[i]
        .backend
        .conns
        .probe_connect(addr, tls)
        .await?;
    if let Some(version) = pool.config.send_proxy_protocol {
        // A copy names no client of its own.
        stream
            .write_all(&crate::proxy_protocol::local_header(version))
            .await?;
    }
    stream.write_all(copy).await?;
    let mut sink = [0u8; 4096];
    while stream.read(&mut sink).await? > 0 {}
    Ok(())
}
