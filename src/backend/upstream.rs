//! The connection pool to one backend: hyper-util's pooled client with a
//! connector that dials the resolved address in the request URI.
//!
//! One client per backend (rather than one shared client) keeps pool locks
//! per backend and lets a reload carry a backend's pooled connections over
//! with the rest of its state. The connect timeout lives in an atomic that a
//! reload retunes, so a new timeout does not cost the pooled connections.

use crate::proxy::body::RequestBody;
use http::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;

/// How long an idle pooled connection is kept. Shorter than the usual backend
/// keep-alive timeouts (nginx 75 s, Node 5 s is the outlier), so sluice
/// rarely reuses a connection the backend is about to close.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

#[derive(Clone)]
pub struct Connector {
    connect_timeout_ms: Arc<AtomicU64>,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let timeout = Duration::from_millis(self.connect_timeout_ms.load(Ordering::Relaxed));
        Box::pin(async move {
            let addr: SocketAddr = dst
                .authority()
                .and_then(|a| a.as_str().parse().ok())
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "upstream URI has no socket address",
                    )
                })?;
            let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
            stream.set_nodelay(true)?;
            Ok(TokioIo::new(stream))
        })
    }
}

pub type UpstreamClient = Client<Connector, RequestBody>;

/// A backend's pooled client and its retunable connect timeout.
pub struct Upstream {
    pub client: UpstreamClient,
    connect_timeout_ms: Arc<AtomicU64>,
}

/// The read buffer for a backend connection, which bounds a response head.
pub const RESPONSE_HEAD_LIMIT: usize = 128 * 1024;

impl Upstream {
    pub fn new(connect_timeout: Duration) -> Upstream {
        let connect_timeout_ms = Arc::new(AtomicU64::new(connect_timeout.as_millis() as u64));
        let connector = Connector {
            connect_timeout_ms: connect_timeout_ms.clone(),
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            // sluice sets Host itself: it is the client's, never the backend address.
            .set_host(false)
            // A backend's response head is bounded too: a broken or hostile
            // backend cannot make sluice buffer more than this per response
            // head (hyper's default is about 400 KiB). Larger heads are 502.
            .http1_max_buf_size(RESPONSE_HEAD_LIMIT)
            .build(connector);
        Upstream {
            client,
            connect_timeout_ms,
        }
    }

    pub fn set_connect_timeout(&self, t: Duration) {
        self.connect_timeout_ms
            .store(t.as_millis() as u64, Ordering::Relaxed);
    }
}
