//! WebSocket: an HTTP/1.1 `Upgrade: websocket` request is forwarded with its
//! Upgrade and `Connection: upgrade` headers kept (every other hop-by-hop
//! header goes as usual); when the backend answers 101, both connections are
//! taken over from hyper and bytes are copied both ways until either side
//! closes or nothing moves for the listener's idle_timeout.
//!
//! The backend is chosen by the pool's strategy like any request, and the
//! lease is held by the tunnel, so an open WebSocket counts in
//! `sluice_backend_in_flight` (and in least_connections) until it closes.

use crate::backend::Lease;
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Method, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Whether a header's comma-separated list holds `token` (any case).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The Upgrade header of a WebSocket opening handshake (RFC 6455 section
/// 4.1: an HTTP/1.1 GET with `Connection: upgrade` and `Upgrade: websocket`),
/// or None for any other request. Other upgrades (h2c, TLS) are not
/// proxied: their headers are dropped as hop-by-hop.
pub fn websocket(parts: &Parts) -> Option<HeaderValue> {
    if parts.version != Version::HTTP_11 || parts.method != Method::GET {
        return None;
    }
    if !has_token(&parts.headers, header::CONNECTION, "upgrade")
        || !has_token(&parts.headers, header::UPGRADE, "websocket")
    {
        return None;
    }
    parts.headers.get(header::UPGRADE).cloned()
}

/// Puts back the two hop-by-hop headers an upgrade needs on the next hop.
pub fn restore_headers(headers: &mut HeaderMap, upgrade: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, upgrade);
}

/// Copies bytes between the client and the backend once both upgrades
/// resolve; holds `lease` until the tunnel ends.
pub async fn tunnel(client: OnUpgrade, backend: OnUpgrade, lease: Lease, idle: Duration) {
    let (client, backend) = match tokio::try_join!(client, backend) {
        Ok(both) => both,
        Err(e) => {
            tracing::debug!(error = %e, "websocket upgrade failed");
            return;
        }
    };
    let last = Arc::new(AtomicU64::new(0));
    let epoch = Instant::now();
    let mut client = Active::new(TokioIo::new(client), last.clone(), epoch);
    let mut backend = Active::new(TokioIo::new(backend), last.clone(), epoch);
    let watchdog = async {
        loop {
            let since = Duration::from_millis(last.load(Ordering::Relaxed));
            let deadline = epoch + since + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut backend) => {
            if let Err(e) = copied {
                tracing::debug!(backend = %lease.backend().addr, error = %e, "websocket ended with an error");
            }
        }
        _ = watchdog => {
            tracing::debug!(backend = %lease.backend().addr, "websocket idle, closed");
        }
    }
    drop(lease);
}

/// A stream that records when it last read anything (milliseconds since
/// `epoch`), for the tunnel's idle timer.
struct Active<T> {
    inner: T,
    last: Arc<AtomicU64>,
    epoch: Instant,
}

impl<T> Active<T> {
    fn new(inner: T, last: Arc<AtomicU64>, epoch: Instant) -> Self {
        Active { inner, last, epoch }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Active<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let ms = this.epoch.elapsed().as_millis() as u64;
            this.last.fetch_max(ms, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Active<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(req: http::request::Builder) -> Parts {
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn recognises_only_websocket_handshakes() {
        let ws = || {
            http::Request::get("/chat")
                .header("connection", "keep-alive, Upgrade")
                .header("upgrade", "WebSocket")
        };
        assert_eq!(websocket(&parts(ws())).unwrap(), "WebSocket");
        assert!(websocket(&parts(ws().method("POST"))).is_none());
        assert!(websocket(&parts(ws().version(Version::HTTP_2))).is_none());
        let h2c = http::Request::get("/")
            .header("connection", "upgrade")
            .header("upgrade", "h2c");
        assert!(websocket(&parts(h2c)).is_none());
        let no_conn = http::Request::get("/").header("upgrade", "websocket");
        assert!(websocket(&parts(no_conn)).is_none());
    }
}
