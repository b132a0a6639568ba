//! A connection to a backend: plain TCP, or TLS over it (`[pool.X.tls]`).
//! One type for both, so the pool, the engine and health checks treat them
//! alike, and pooled TLS connections are reused like cleartext ones.
//!
//! A pool that speaks HTTP/2 gives the engine one stream of a multiplexed
//! connection instead (`Mux`): bytes of one HTTP/1.1 exchange in and out,
//! translated to and from HTTP/2 frames (`http1::h2_upstream`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub enum UpStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// One HTTP/2 stream, seen as one HTTP/1.1 exchange; never pooled.
    Mux(Box<dyn Duplex>),
}

/// A byte stream of one exchange (see `UpStream::Mux`).
pub trait Duplex: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Duplex for T {}

/// What a TLS connection to one backend needs: the pool's client settings
/// and the name the backend is verified as.
#[derive(Clone, Copy)]
pub struct TlsTarget<'a> {
    pub config: &'a Arc<rustls::ClientConfig>,
    pub name: &'a rustls::pki_types::ServerName<'static>,
}

impl UpStream {
    /// The TCP socket under the stream; none under an HTTP/2 stream.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            UpStream::Plain(s) => Some(s),
            UpStream::Tls(s) => Some(s.get_ref().0),
            UpStream::Mux(_) => None,
        }
    }

    /// The protocol the TLS handshake agreed on (ALPN), if any.
    pub fn alpn(&self) -> Option<&[u8]> {
        match self {
            UpStream::Tls(s) => s.get_ref().1.alpn_protocol(),
            _ => None,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, UpStream::Tls(_))
    }

    /// Whether an idle pooled stream is still usable: no readiness reported
    /// since it was last read empty, or a read finds nothing.
    pub fn alive(&self) -> bool {
        let Some(tcp) = self.tcp() else {
            return false;
        };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match tcp.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            // A TLS stream's bytes are records: none may be taken from
            // under it, so one that became readable while idle (a
            // close_notify, most likely) is dropped.
            Poll::Ready(Ok(())) if self.is_tls() => false,
            Poll::Ready(Ok(())) => matches!(
                tcp.try_read(&mut [0u8; 1]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock
            ),
        }
    }

    /// Connects to a backend (without Nagle: small requests must not
    /// wait), with TLS when `tls` says so.
    pub async fn connect(
        addr: std::net::SocketAddr,
        tls: Option<TlsTarget<'_>>,
    ) -> io::Result<UpStream> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        UpStream::open(tcp, tls).await
    }

    /// Makes `tcp` a backend connection: TLS over it when `tls` says so.
    pub async fn open(tcp: TcpStream, tls: Option<TlsTarget<'_>>) -> io::Result<UpStream> {
        match tls {
            None => Ok(UpStream::Plain(tcp)),
            Some(t) => {
                let connector = tokio_rustls::TlsConnector::from(t.config.clone());
                let stream = connector.connect(t.name.clone(), tcp).await?;
                Ok(UpStream::Tls(Box::new(stream)))
            }
        }
    }
}

impl AsyncRead for UpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            UpStream::Mux(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            UpStream::Mux(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            UpStream::Mux(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpStream::Plain(s) => s.is_write_vectored(),
            UpStream::Tls(s) => s.is_write_vectored(),
            UpStream::Mux(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpStream::Plain(s) => Pin::new(s).poll_flush(cx),
            UpStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            UpStream::Mux(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            UpStream::Mux(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
