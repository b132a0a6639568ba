//! HTTP/2 from clients (h2 by ALPN, h2c by prior knowledge), served by
//! hyper; each request goes to its backend over the HTTP/1 engine's
//! backend side (`h2_forward`, `http1::bridge`), with the same routing,
//! admission, retry and accounting as an HTTP/1 request (`proxy`).
//!
//! A connection with no stream open for `idle_timeout` is closed with
//! GOAWAY, as is every connection when its listener drains.

use crate::config::ListenerConfig;
use crate::http1::bridge;
use crate::http1::bridge_body::ResponseBody;
use crate::proxy::completion::{AccessRecord, Completion};
use crate::proxy::error::ProxyError;
use crate::proxy::request_id::RequestId;
use crate::proxy::Client;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::Instant;

/// Streams open on a connection and when the last one ended, for the idle
/// timeout.
#[derive(Default)]
struct Activity {
    open: AtomicUsize,
    /// Milliseconds since `epoch` when a stream last ended.
    last: AtomicU64,
}

/// Counts a stream open until dropped (with its response body).
struct Open {
    activity: Arc<Activity>,
    epoch: Instant,
}

impl Open {
    fn new(activity: &Arc<Activity>, epoch: Instant) -> Open {
        activity.open.fetch_add(1, Ordering::AcqRel);
        Open {
            activity: activity.clone(),
            epoch,
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.activity.last.fetch_max(ms, Ordering::AcqRel);
        self.activity.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves an HTTP/2 connection until it ends, idles out or its listener
/// drains.
pub async fn serve<T>(
    io: T,
    client: Arc<Client>,
    config: &ListenerConfig,
    mut stop: watch::Receiver<bool>,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // After GOAWAY on a drain, open streams (gRPC streams, SSE) get the
    // shutdown grace to finish, then the connection is closed.
    let grace = client.shared.snapshot().config.runtime.shutdown_grace;
    let activity = Arc::new(Activity::default());
    let epoch = Instant::now();
    let svc_activity = activity.clone();
    let service = service_fn(move |req| {
        let open = Open::new(&svc_activity, epoch);
        handle(req, client.clone(), open)
    });
    let conn = builder(config).serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let idle = config.idle_timeout;
    let idled = async {
        loop {
            let last = Duration::from_millis(activity.last.load(Ordering::Acquire));
            let deadline = epoch + last + idle;
            if activity.open.load(Ordering::Acquire) == 0 && Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.max(Instant::now() + idle / 4)).await;
        }
    };
    tokio::pin!(idled);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        _ = async { let _ = stop.wait_for(|s| *s).await; } => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(grace, conn).await {
                Ok(ended) => ended,
                Err(_) => {
                    tracing::debug!("HTTP/2 streams still open at the end of the grace; closed");
                    Ok(())
                }
            }
        }
        _ = &mut idled => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(error = %e, "HTTP/2 connection ended with an error");
    }
}

fn builder(config: &ListenerConfig) -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
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
    b
}

/// The body of an answer to an HTTP/2 client.
pub enum H2Body {
    Full(Option<Bytes>),
    /// Boxed: an error answer need not reserve room for a backend body.
    Backend(Box<ResponseBody>),
    /// A backend body compressed on the way (`route.compress`).
    Compressed(Box<crate::compress::Compressed<ResponseBody>>),
}

/// A response body carrying the request's accounting and its stream count:
/// both end when hyper drops it (after the last byte, or on a reset).
pub struct Answer {
    body: H2Body,
    done: Option<Completion>,
    _open: Open,
}

impl Body for Answer {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let polled = match &mut this.body {
            H2Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            H2Body::Backend(b) => Pin::new(&mut **b).poll_frame(cx),
            H2Body::Compressed(b) => Pin::new(&mut **b).poll_frame(cx),
        };
        match &polled {
            Poll::Ready(Some(Ok(f))) => {
                if let (Some(d), Some(done)) = (f.data_ref(), this.done.as_mut()) {
                    done.bytes += d.len() as u64;
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(done) = this.done.as_mut() {
                    done.aborted = true;
                }
                this.done.take();
            }
            Poll::Ready(None) => {
                this.done.take();
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.body {
            H2Body::Full(b) => b.is_none(),
            H2Body::Backend(b) => b.is_end_stream(),
            H2Body::Compressed(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.body {
            H2Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            H2Body::Backend(b) => b.size_hint(),
            H2Body::Compressed(_) => SizeHint::default(),
        }
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        // Dropped before its end: the client reset the stream.
        let unfinished = match &self.body {
            H2Body::Full(_) => false,
            H2Body::Backend(b) => !b.is_end_stream(),
            H2Body::Compressed(b) => !b.is_end_stream(),
        };
        if let (Some(done), true) = (self.done.as_mut(), unfinished) {
            done.aborted = true;
        }
    }
}

async fn handle(
    req: Request<Incoming>,
    client: Arc<Client>,
    open: Open,
) -> Result<Response<Answer>, Infallible> {
    let start = Instant::now();
    let snap = client.shared.snapshot();
    let (parts, body) = req.into_parts();
    let id = RequestId::from_client(parts.headers.get("x-request-id").map(|v| v.as_bytes()));
    let mut done = Completion::new(client.clone(), start);
    if snap.config.log.access_log {
        done.record = Some(Box::new(AccessRecord {
            request_id: id.as_str().to_string(),
            method: parts.method.to_string(),
            host: bridge::request_host(&parts)
                .ok()
                .flatten()
                .unwrap_or("-")
                .to_string(),
            path: parts.uri.path().to_string(),
            client: client.peer.ip().to_string(),
            ..Default::default()
        }));
    }
    let head_only = parts.method == Method::HEAD;
    let resp = match super::h2_forward::forward(&snap, &client, parts, body, &id, &mut done).await {
        Ok((status, builder, body)) => {
            done.status = status;
            builder
                .body(body)
                .map_err(|_| ProxyError::Upstream("invalid response head".into()))
        }
        Err(e) => Err(e),
    };
    let (resp, status) = match resp {
        Ok(r) => {
            let s = r.status().as_u16();
            (r, s)
        }
        Err(e) => {
            tracing::debug!(request_id = ?id, error = %e, "request failed");
            (error_response(&e, &id, head_only), e.status())
        }
    };
    done.status = status;
    let (parts, body) = resp.into_parts();
    Ok(Response::from_parts(
        parts,
        Answer {
            body,
            done: Some(done),
            _open: open,
        },
    ))
}

fn error_response(e: &ProxyError, id: &RequestId, head_only: bool) -> Response<H2Body> {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_GATEWAY);
    let body = format!(
        "{} {}: {} (request id {})\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        e.detail(),
        id.as_str()
    );
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .header("x-request-id", id.as_bytes());
    if let Some(s) = e.retry_after() {
        b = b.header("retry-after", s);
    }
    if let Some((name, value)) = e.field() {
        b = b.header(name, value);
    }
    let body = (!head_only).then(|| Bytes::from(body));
    b.body(H2Body::Full(body))
        .unwrap_or_else(|_| Response::new(H2Body::Full(None)))
}
