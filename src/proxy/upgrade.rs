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

/// How a tunnel ended, with the bytes it carried either way (counted as
/// read, so known however it ended).
pub struct Tunneled {
    pub up: u64,
    pub down: u64,
    pub ended: io::Result<()>,
}

/// Copies bytes both ways until either side closes, nothing moves for
/// `idle`, or `ends_by` resolves (a drain whose grace is over: the tunnel
/// is closed from this side, so that it is logged and counted before the
/// process exits). `to_backend` and `to_client` are bytes already read from
/// one side (after the handshake) that belong to the other.
pub async fn tunnel<C, B>(
    client: &mut C,
    backend: &mut B,
    to_backend: &[u8],
    to_client: &[u8],
    idle: Duration,
    ends_by: impl std::future::Future<Output = ()>,
) -> Tunneled
where
    C: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let (up0, down0) = (to_backend.len() as u64, to_client.len() as u64);
    let early = async {
        backend.write_all(to_backend).await?;
        client.write_all(to_client).await
    };
    if let Err(e) = early.await {
        return Tunneled {
            up: 0,
            down: 0,
            ended: Err(e),
        };
    }
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
    let ended = tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut backend) => copied.map(|_| ()),
        _ = watchdog => Err(io::Error::new(io::ErrorKind::TimedOut, "tunnel idle")),
        _ = ends_by => {
            let _ = client.shutdown().await;
            let _ = backend.shutdown().await;
            Err(io::Error::other("closed at the end of the drain's grace"))
        }
    };
    Tunneled {
        up: up0 + client.read,
        down: down0 + backend.read,
        ended,
    }
}

/// A stream that records when it last read anything (milliseconds since
/// `epoch`), for the tunnel's idle timer.
struct Active<'a, T: ?Sized> {
    inner: &'a mut T,
    last: Arc<AtomicU64>,
    epoch: Instant,
    /// Bytes read from this side.
    read: u64,
}

impl<'a, T: ?Sized> Active<'a, T> {
    fn new(inner: &'a mut T, last: Arc<AtomicU64>, epoch: Instant) -> Self {
        Active {
            inner,
            last,
            epoch,
            read: 0,
        }
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
            this.read += (buf.filled().len() - before) as u64;
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
