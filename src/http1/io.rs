//! Small I/O helpers of the engine: the stream types it serves, vectored
//! writes that finish or fail, and the one reusable timer a connection
//! arms only when it has to wait.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// A client or backend byte stream the engine can drive.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The socket under the stream, so an idle connection can wait for it
    /// to become readable while holding no buffers (parking). None for
    /// streams that cannot park (in-memory streams of the fuzzer).
    fn socket(&self) -> Option<&TcpStream> {
        None
    }

    /// Ready once the stream may have bytes to read: a read buffer is
    /// taken only then, so a request that waits on a slow backend holds
    /// none. Streams that cannot tell (TLS may hold decrypted bytes) are
    /// always ready.
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.socket() {
            Some(s) => s.poll_read_ready(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl Stream for TcpStream {
    fn socket(&self) -> Option<&TcpStream> {
        Some(self)
    }
}

impl Stream for tokio_rustls::server::TlsStream<TcpStream> {
    fn socket(&self) -> Option<&TcpStream> {
        Some(self.get_ref().0)
    }

    fn poll_readable(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Stream for tokio::io::DuplexStream {}

impl Stream for crate::backend::stream::UpStream {
    fn socket(&self) -> Option<&TcpStream> {
        self.tcp()
    }

    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.tcp() {
            // Decrypted bytes may wait inside the TLS state.
            Some(_) if self.is_tls() => Poll::Ready(Ok(())),
            Some(tcp) => tcp.poll_read_ready(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// A timer armed only while something waits, with the deadline it is
/// armed for. Its `Sleep` is made the first time it is needed and reused
/// after (re-arming costs no allocation); a connection whose reads and
/// writes never wait makes none.
#[derive(Default)]
pub struct Timer {
    sleep: Option<Pin<Box<Sleep>>>,
    armed: Option<Instant>,
}

impl Timer {
    /// Ready when `deadline` has passed; arms the timer for it first.
    pub fn poll_at(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if self.armed != Some(deadline) {
            sleep.as_mut().reset(deadline);
            self.armed = Some(deadline);
        }
        sleep.as_mut().poll(cx)
    }

    pub fn disarm(&mut self) {
        self.armed = None;
    }
}

/// A write that the peer does not take for `stall` fails with TimedOut, so
/// a client that never reads cannot hold a connection (and a backend's)
/// forever. `since` is when the current wait began.
pub struct Stall {
    pub limit: Duration,
    since: Option<Instant>,
}

impl Stall {
    pub fn new(limit: Duration) -> Stall {
        Stall { limit, since: None }
    }
}

/// Writes every byte of `parts` (in order, vectored), within `stall` of
/// waiting at a time.
pub async fn write_all<S: AsyncWrite + Unpin + ?Sized>(
    io: &mut S,
    parts: &[&[u8]],
    timer: &mut Timer,
    stall: &mut Stall,
) -> io::Result<()> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut done = 0;
    std::future::poll_fn(|cx| {
        while done < total {
            let mut slices = [IoSlice::new(&[]); 4];
            let mut n = 0;
            let mut skip = done;
            for p in parts {
                if skip >= p.len() {
                    skip -= p.len();
                    continue;
                }
                if n < slices.len() {
                    slices[n] = IoSlice::new(&p[skip..]);
                    n += 1;
                }
                skip = 0;
            }
            match Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(w)) => {
                    done += w;
                    stall.since = None;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    let since = *stall.since.get_or_insert_with(Instant::now);
                    if timer.poll_at(cx, since + stall.limit).is_ready() {
                        return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
                    }
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Ok(()))
    })
    .await?;
    timer.disarm();
    Ok(())
}

/// Closes a connection whose peer may still be sending (a refused request,
/// an upload answered early): shut the write side, then read and drop what
/// comes for a moment, so the peer reads the answer instead of a reset.
pub async fn linger<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(io: &mut S) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const TIME: Duration = Duration::from_secs(1);
    const BYTES: usize = 1 << 20;
    if io.shutdown().await.is_err() {
        return;
    }
    let mut scratch = [0u8; 4096];
    let mut drained = 0;
    let _ = tokio::time::timeout(TIME, async {
        while drained < BYTES {
            match io.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}
