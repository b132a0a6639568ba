//! WebSocket tunnels: an HTTP/1.1 `Upgrade: websocket` request is forwarded
//! with its Upgrade and `Connection: upgrade` headers kept (every other
//! hop-by-hop header goes as usual); when the backend answers 101, the
//! client connection's task copies bytes both ways until either side
//! closes or nothing moves for the listener's idle_timeout.
//!
//! The backend is chosen by the pool's strategy like any request, and the
//! lease is held by the tunnel, so an open WebSocket counts in
//! `sluice_backend_in_flight` (and in least_connections) until it closes.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

/// Copies bytes both ways until either side closes or nothing moves for
/// `idle`. `to_backend` and `to_client` are bytes already read from one side
/// (after the handshake) that belong to the other. Returns the bytes copied
/// (client to backend, backend to client).
pub async fn tunnel<C, B>(
    client: &mut C,
    backend: &mut B,
    to_backend: &[u8],
    to_client: &[u8],
    idle: Duration,
) -> io::Result<(u64, u64)>
where
    C: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    backend.write_all(to_backend).await?;
    client.write_all(to_client).await?;
    let last = Arc::new(AtomicU64::new(0));
    let epoch = Instant::now();
    let mut client = Active::new(client, last.clone(), epoch);
    let mut backend = Active::new(backend, last.clone(), epoch);
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
            copied.map(|(up, down)| (up + to_backend.len() as u64, down + to_client.len() as u64))
        }
        _ = watchdog => Err(io::Error::new(io::ErrorKind::TimedOut, "tunnel idle")),
    }
}

/// A stream that records when it last read anything (milliseconds since
/// `epoch`), for the tunnel's idle timer.
struct Active<'a, T: ?Sized> {
    inner: &'a mut T,
    last: Arc<AtomicU64>,
    epoch: Instant,
}

impl<'a, T: ?Sized> Active<'a, T> {
    fn new(inner: &'a mut T, last: Arc<AtomicU64>, epoch: Instant) -> Self {
        Active { inner, last, epoch }
    }
}

impl<T: AsyncRead + Unpin + ?Sized> AsyncRead for Active<'_, T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut *this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let ms = this.epoch.elapsed().as_millis() as u64;
            this.last.fetch_max(ms, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin + ?Sized> AsyncWrite for Active<'_, T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_shutdown(cx)
    }
}
